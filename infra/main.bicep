// Secure Export receiver for Azure Monitor: everything from an empty resource group
// to alerts arriving as work items.
//
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.bicepparam
//   func azure functionapp publish <functionAppName output> --python
//
// Needs Bicep 0.36.1+ (Microsoft Graph extension, see bicepconfig.json), and a
// deploying user with Application Administrator (or Cloud Application Administrator)
// in Entra ID and Owner (or User Access Administrator + Contributor) on the resource
// group. See docs/deploy.md.

targetScope = 'resourceGroup'

@description('Short name used in every resource name: 2-9 lowercase letters and digits (it becomes part of the storage account name, which allows nothing else).')
@minLength(2)
@maxLength(9)
param baseName string = 'itsm'

@description('Region of the resources. It must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Display name of the app registration.')
param appDisplayName string = 'Azure Monitor ITSM receiver (${baseName})'

@description('Application ID URI of the app registration. Empty: api://<tenant id>/<unique name>.')
param applicationIdUri string = ''

@description('App id of the caller Azure Monitor uses for secure webhooks ("AzNS AAD Webhook"). Keep the default in the public cloud.')
param aznsAppId string = '461e8683-5575-4561-ac7f-899cc907d62a'

@description('Short name of the action group (at most 12 characters).')
@maxLength(12)
param actionGroupShortName string = 'itsm'

@description('Also deploy an example metric alert rule that uses the action group.')
param deployExampleAlertRule bool = false

@description('Largest accepted alert body, in bytes (MAX_PAYLOAD_BYTES).')
param maxPayloadBytes int = 1048576

@description('alert: one work item per Azure Monitor alert instance; rule: one per alert rule and target (CORRELATION_MODE).')
@allowed([
  'alert'
  'rule'
])
param correlationMode string = 'alert'

@description('Minutes after resolution during which a new firing reopens the work item (REOPEN_WINDOW_MINUTES).')
param reopenWindowMinutes int = 60

@description('State changes within the flap window that mark a work item as flapping (FLAP_THRESHOLD).')
param flapThreshold int = 4

@description('Flap window, in minutes (FLAP_WINDOW_MINUTES).')
param flapWindowMinutes int = 60

@description('A person\'s acknowledge, close and reopen of a work item set the user state of its Azure Monitor alerts (SYNC_ALERT_STATE).')
param syncAlertState bool = true

@description('Subscriptions whose Azure Monitor alerts the app may acknowledge and close (a custom role with just that is assigned in each). Default: this deployment\'s subscription.')
@minLength(1)
param alertSubscriptionIds array = [
  subscription().subscriptionId
]

@description('Days after which resolved and closed work items are deleted (RETENTION_DAYS).')
@minValue(1)
param retentionDays int = 180

@description('Comma-separated tenant ids (each one the app accepts tokens of) whose callers see every tenant\'s work items and CIs (AAD_OPERATOR_TENANT_IDS); empty: every caller sees its own tenant only.')
param operatorTenantIds string = ''

@description('Maximum number of Flex Consumption instances.')
param maximumInstanceCount int = 100

@description('DNS suffix of App Service default host names in this cloud (the board\'s redirect URI is https://<function app>.<suffix>/board/).')
param appServiceDomain string = 'azurewebsites.net'

@description('Tags applied to every resource.')
param tags object = {}

@description('Object ids of users granted WorkItems.Read (read work items through the API).')
param workItemsReaderUserIds array = []

@description('Object ids of groups granted WorkItems.Read (needs Entra ID P1 or P2).')
param workItemsReaderGroupIds array = []

@description('Object ids of service principals (apps, managed identities) granted WorkItems.Read.')
param workItemsReaderServicePrincipalIds array = []

@description('Object ids of users granted WorkItems.ReadWrite (read and update work items).')
param workItemsWriterUserIds array = []

@description('Object ids of groups granted WorkItems.ReadWrite (needs Entra ID P1 or P2).')
param workItemsWriterGroupIds array = []

@description('Object ids of service principals (apps, managed identities) granted WorkItems.ReadWrite.')
param workItemsWriterServicePrincipalIds array = []

// baseName check: Bicep has no pattern decorator, so every character not allowed is
// collected here and the deployment fails in validation, before anything is created,
// when there is one (a hyphen would otherwise break the storage account name halfway).
// The failure is a lookup of a key that does not exist, whose error quotes the key:
// "The language expression property 'baseName may hold ...' doesn't exist". (Bicep's
// fail() says it more directly, but checkov's pinned Bicep parser cannot read it.)
var baseNameAllowed = 'abcdefghijklmnopqrstuvwxyz0123456789'
var baseNameRejected = [for i in range(0, length(baseName)): contains(baseNameAllowed, substring(baseName, i, 1)) ? '' : substring(baseName, i, 1)]
var baseNameCheck = {
  ok: baseName
}
var checkedBaseName = baseNameCheck[empty(join(baseNameRejected, '')) ? 'ok' : 'baseName may hold lowercase letters and digits only; "${baseName}" has "${join(baseNameRejected, '')}"']

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, checkedBaseName))

var functionAppName = 'func-${checkedBaseName}-${resourceToken}'
// Storage account names: 3-24 lowercase letters and digits.
var storageAccountName = take('st${checkedBaseName}${resourceToken}', 24)
var appUniqueName = 'azmon-itsm-${checkedBaseName}-${resourceToken}'

// Storage layout: the names the code binds to (shared/config.py) and the tables it uses.
// Change table names here only.
var alertsQueueName = 'alerts'
// shared/config.py ALERT_SYNC_QUEUE: a person's state changes on their way to Azure Monitor.
var alertSyncQueueName = 'alert-state-sync'
var queueNames = [
  alertsQueueName
  '${alertsQueueName}-poison'
  alertSyncQueueName
  '${alertSyncQueueName}-poison'
]
// shared/table_keys.py WORKITEMS_TABLE, CMDB_TABLE, shared/workitem_index.py INDEX_TABLE
// and shared/config.py ALERT_SYNC_TABLE
var tableNames = [
  'workitems'
  'cmdb'
  'workitemindex'
  'alertsync'
]
var claimCheckContainerName = 'alert-payloads'
var deploymentContainerName = 'app-package'

// The receive_alert function's route "api/alerts" (host.json's routePrefix is empty).
var webhookPath = '/api/alerts'

// The web board's address: shared/board.py BOARD_PATH on the app's default host name, known
// before the app exists so that the app registration (deployed first) can name it.
var boardRedirectUri = 'https://${functionAppName}.${appServiceDomain}/board/'

// AAD_AUTHORITY_HOST wants no trailing slash; loginEndpoint has one.
var loginEndpoint = environment().authentication.loginEndpoint
var authorityHost = endsWith(loginEndpoint, '/') ? substring(loginEndpoint, 0, length(loginEndpoint) - 1) : loginEndpoint
// ARM_ENDPOINT wants no trailing slash either.
var resourceManager = environment().resourceManager
var armEndpoint = endsWith(resourceManager, '/') ? substring(resourceManager, 0, length(resourceManager) - 1) : resourceManager

module entraApp 'modules/entra-app.bicep' = {
  name: 'entra-app'
  params: {
    uniqueName: appUniqueName
    displayName: appDisplayName
    applicationIdUri: applicationIdUri
    aznsAppId: aznsAppId
    boardRedirectUri: boardRedirectUri
    workItemsReadPrincipalIds: union(workItemsReaderUserIds, workItemsReaderGroupIds, workItemsReaderServicePrincipalIds)
    workItemsReadWritePrincipalIds: union(workItemsWriterUserIds, workItemsWriterGroupIds, workItemsWriterServicePrincipalIds)
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${baseName}-${resourceToken}'
    applicationInsightsName: 'appi-${baseName}-${resourceToken}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    name: storageAccountName
    queueNames: queueNames
    tableNames: tableNames
    containerNames: [
      deploymentContainerName
      claimCheckContainerName
    ]
    claimCheckContainerName: claimCheckContainerName
    // A backstop for blobs the retention function did not delete: a month after it would.
    claimCheckRetentionDays: retentionDays + 30
  }
}

// User-assigned rather than system-assigned: its client id is known before the app
// exists, so the identity-based AzureWebJobsStorage settings can name it.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${baseName}-${resourceToken}'
  location: location
  tags: tags
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principalId: identity.properties.principalId
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    location: location
    tags: tags
    planName: 'plan-${baseName}-${resourceToken}'
    functionAppName: functionAppName
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    tenantIds: tenant().tenantId
    audiences: '${entraApp.outputs.applicationIdUri},${entraApp.outputs.clientId}'
    allowedCallerAppIds: aznsAppId
    requiredRole: entraApp.outputs.secureWebhookRole
    authorityHost: authorityHost
    maxPayloadBytes: maxPayloadBytes
    correlationMode: correlationMode
    reopenWindowMinutes: reopenWindowMinutes
    flapThreshold: flapThreshold
    flapWindowMinutes: flapWindowMinutes
    syncAlertState: syncAlertState
    armEndpoint: armEndpoint
    boardClientId: entraApp.outputs.clientId
    boardApiScope: '${entraApp.outputs.applicationIdUri}/${entraApp.outputs.workItemsScope}'
    retentionDays: retentionDays
    operatorTenantIds: operatorTenantIds
  }
  // The host reaches storage with the identity from its first start.
  dependsOn: [
    rbac
  ]
}

// Two-way sync: a custom role holding only "change an alert's state" (and read it), defined
// once in this subscription and assignable in each of alertSubscriptionIds, where it is
// assigned to the app's identity. Subscription-scope modules from this resource-group
// deployment: the deploying user needs Owner or User Access Administrator there.
module alertStateRole 'modules/alert-state-role.bicep' = {
  name: 'alert-state-role'
  scope: subscription()
  params: {
    roleName: 'Azure Monitor alert state writer (${baseName}-${resourceToken})'
    assignableSubscriptionIds: alertSubscriptionIds
  }
}

module alertStateAssignments 'modules/alert-state-assignment.bicep' = [
  for subscriptionId in alertSubscriptionIds: {
    name: 'alert-state-${uniqueString(subscriptionId)}'
    scope: subscription(subscriptionId)
    params: {
      roleDefinitionName: alertStateRole.outputs.roleDefinitionName
      principalId: identity.properties.principalId
    }
  }
]

module actionGroup 'modules/action-group.bicep' = {
  name: 'action-group'
  params: {
    tags: tags
    actionGroupName: 'ag-${baseName}-${resourceToken}'
    groupShortName: actionGroupShortName
    webhookUrl: 'https://${functionApp.outputs.defaultHostName}${webhookPath}'
    applicationObjectId: entraApp.outputs.applicationObjectId
    applicationIdUri: entraApp.outputs.applicationIdUri
    deployExampleAlertRule: deployExampleAlertRule
    exampleAlertTargetId: storage.outputs.id
  }
}

@description('Function app to publish to: func azure functionapp publish <name> --python')
output functionAppName string = functionApp.outputs.name

@description('URL Azure Monitor posts alerts to.')
output webhookUrl string = 'https://${functionApp.outputs.defaultHostName}${webhookPath}'

@description('Application (client) id of the app registration.')
output applicationClientId string = entraApp.outputs.clientId

@description('Object id of the app registration (the webhook receiver objectId).')
output applicationObjectId string = entraApp.outputs.applicationObjectId

@description('Application ID URI of the app registration.')
output applicationIdUri string = entraApp.outputs.applicationIdUri

@description('The web board (sign in with a user holding WorkItems.Read or WorkItems.ReadWrite).')
output boardUrl string = boardRedirectUri

@description('Scope to request for a user token to the work item API: az account get-access-token --scope <this>.')
output workItemsApiScope string = '${entraApp.outputs.applicationIdUri}/${entraApp.outputs.workItemsScope}'

@description('Action group to attach to alert rules.')
output actionGroupId string = actionGroup.outputs.actionGroupId

output storageAccountName string = storage.outputs.name

// Entra ID side of the Secure Webhook, through the Microsoft Graph Bicep extension:
// the app registration Azure Monitor requests tokens for, its service principal,
// the AzNS AAD Webhook service principal (the caller) and the app role assignment
// that puts `ActionGroupsSecureWebhook` into the caller's tokens.
//
// Kept in its own module: checkov's Bicep parser cannot read `extension` lines,
// so the other modules stay scannable. Needs Bicep 0.36.1 or later and, for the
// deploying user, Application Administrator or Cloud Application Administrator.

extension microsoftGraphV1

@description('Unique name of the app registration in the tenant (the Graph extension keys the application on it).')
param uniqueName string

@description('Display name of the app registration.')
param displayName string

@description('Application ID URI. Empty: api://<tenant id>/<uniqueName>, a form tenants accept without a verified domain.')
param applicationIdUri string = ''

@description('App id of "AzNS AAD Webhook", the first-party application Azure Monitor uses to call secure webhooks (the same in every public-cloud tenant).')
param aznsAppId string = '461e8683-5575-4561-ac7f-899cc907d62a'

@description('Where the web board signs users in: its single-page-application redirect URI (https://<function app host>/board/).')
param boardRedirectUri string

@description('Object ids of users, groups and service principals granted WorkItems.Read.')
param workItemsReadPrincipalIds array = []

@description('Object ids of users, groups and service principals granted WorkItems.ReadWrite.')
param workItemsReadWritePrincipalIds array = []

@description('Client app ids pre-authorized for user_impersonation, so their users get tokens for the API without a consent prompt. Default: the Azure CLI (az account get-access-token).')
param preAuthorizedClientAppIds array = [
  '04b07795-8ddb-461a-bbee-02f9e1bf7b46'
]

var secureWebhookRoleValue = 'ActionGroupsSecureWebhook'
var workItemsReadRoleValue = 'WorkItems.Read'
var workItemsReadWriteRoleValue = 'WorkItems.ReadWrite'

// App role ids must stay stable across deployments: derive them from the unique name.
var secureWebhookRoleId = guid(uniqueName, secureWebhookRoleValue)
var workItemsReadRoleId = guid(uniqueName, workItemsReadRoleValue)
var workItemsReadWriteRoleId = guid(uniqueName, workItemsReadWriteRoleValue)

// The delegated permission a client app (a dashboard, a chat bot, the Azure CLI) requests so
// that a signed-in user can call the work item API. The API requires it in delegated tokens
// (scp) on top of the user's app role (roles): shared/workitem_api.py, docs/security.md.
var workItemsScopeValue = 'user_impersonation'
var workItemsScopeId = guid(uniqueName, workItemsScopeValue)

var identifierUri = empty(applicationIdUri) ? 'api://${tenant().tenantId}/${uniqueName}' : applicationIdUri

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  description: 'Receives Azure Monitor alerts (Secure Webhook, common alert schema) and serves the work item API.'
  signInAudience: 'AzureADMyOrg'
  // Without an Application ID URI Azure Monitor fails with AadWebhookApplicationUriNotFound.
  identifierUris: [
    identifierUri
  ]
  api: {
    // v2 tokens: iss https://login.microsoftonline.com/<tid>/v2.0, aud = client id, azp = caller.
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: [
      {
        id: workItemsScopeId
        value: workItemsScopeValue
        type: 'User'
        adminConsentDisplayName: 'Access the ITSM receiver work item API'
        adminConsentDescription: 'Lets the app call the work item API as the signed-in user; what the user may do there still depends on the app roles assigned to them (WorkItems.Read, WorkItems.ReadWrite).'
        userConsentDisplayName: 'Access the ITSM receiver work item API'
        userConsentDescription: 'Lets the app read and update work items on your behalf, as far as your own roles allow.'
        isEnabled: true
      }
    ]
  }
  // The web board (GET /board/) signs users in with MSAL.js: authorization code with PKCE,
  // which Entra allows only for redirect URIs of the single-page-application platform.
  spa: {
    redirectUris: [
      boardRedirectUri
    ]
  }
  appRoles: [
    {
      id: secureWebhookRoleId
      value: secureWebhookRoleValue
      displayName: secureWebhookRoleValue
      description: 'Azure Monitor action groups (AzNS AAD Webhook) may post alerts.'
      allowedMemberTypes: [
        'Application'
      ]
      isEnabled: true
    }
    {
      id: workItemsReadRoleId
      value: workItemsReadRoleValue
      displayName: 'Read work items'
      description: 'Read work items, their history and bound configuration items.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
    {
      id: workItemsReadWriteRoleId
      value: workItemsReadWriteRoleValue
      displayName: 'Read and update work items'
      description: 'Read and update work items (assign, acknowledge, close).'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
  ]
  // The deploying principal owns the application: Azure refuses to create a secure
  // webhook for a caller that does not (AadWebhookResourceNotOwnedByCaller). Owners
  // are appended, so a redeployment by someone else adds them without removing anyone.
  owners: {
    relationships: [
      deployer().objectId
    ]
  }
}

// Pre-authorizing clients is a second write of the same application: Graph accepts a
// preAuthorizedApplications entry only for a scope the application already has, so the
// scope is created above first (the Graph extension updates only the properties given).
resource applicationPreAuthorization 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: application.uniqueName
  displayName: displayName
  api: {
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: application.api.oauth2PermissionScopes
    preAuthorizedApplications: [for clientAppId in preAuthorizedClientAppIds: {
      appId: clientAppId
      delegatedPermissionIds: [
        workItemsScopeId
      ]
    }]
  }
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: application.appId
  // Only principals holding one of the app roles can get a token for this API.
  appRoleAssignmentRequired: true
}

// Declared by app id: created when the tenant does not have it yet, left as is otherwise.
resource aznsServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: aznsAppId
}

resource aznsRoleAssignment 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: aznsServicePrincipal.id
  resourceId: servicePrincipal.id
  appRoleId: secureWebhookRoleId
}

// People and apps that use the work item API. Assignments are per principal: a group's
// members get the role through the group (assigning to groups needs Entra ID P1 or P2).
resource workItemsReadAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for principalId in union(workItemsReadPrincipalIds, []): {
  principalId: principalId
  resourceId: servicePrincipal.id
  appRoleId: workItemsReadRoleId
}]

resource workItemsReadWriteAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [for principalId in union(workItemsReadWritePrincipalIds, []): {
  principalId: principalId
  resourceId: servicePrincipal.id
  appRoleId: workItemsReadWriteRoleId
}]

@description('Object id of the application: the action group webhook receiver objectId.')
output applicationObjectId string = application.id

@description('Application (client) id: the audience of v2 tokens.')
output clientId string = application.appId

@description('Application ID URI: the action group webhook receiver identifierUri, the audience of v1 tokens.')
output applicationIdUri string = identifierUri

output servicePrincipalId string = servicePrincipal.id
output aznsServicePrincipalId string = aznsServicePrincipal.id
output secureWebhookRole string = secureWebhookRoleValue

@description('Delegated permission (scope) client apps request for the work item API: <Application ID URI>/user_impersonation.')
output workItemsScope string = workItemsScopeValue

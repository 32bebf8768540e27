// The receiver: a Python 3.11 function app on Flex Consumption (FC1).
//
// Runtime, scale and the deployment package live in functionAppConfig; Flex rejects
// or ignores the old app settings for them (FUNCTIONS_WORKER_RUNTIME,
// FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE, WEBSITE_CONTENT*, ...), so
// none are set here. Storage is reached with the user-assigned identity only.

param location string
param tags object = {}
param planName string
param functionAppName string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (AzureWebJobsStorage__clientId, Application Insights authentication).')
param identityClientId string

param storageAccountName string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

param applicationInsightsConnectionString string

@description('Maximum number of instances Flex Consumption scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory per instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// Settings read by shared/config.py (see the README's configuration table).
@description('Comma-separated tenant ids whose tokens are accepted (AAD_TENANT_IDS).')
param tenantIds string

@description('Comma-separated accepted audiences: the Application ID URI (v1 tokens) and the client id (v2 tokens) (AAD_AUDIENCES).')
param audiences string

@description('Comma-separated app ids allowed to call (AAD_ALLOWED_CALLER_APP_IDS).')
param allowedCallerAppIds string

@description('App role the caller must hold (AAD_REQUIRED_ROLE).')
param requiredRole string

@description('Entra ID authority host, without a trailing slash (AAD_AUTHORITY_HOST).')
param authorityHost string

@description('Largest accepted request body, in bytes (MAX_PAYLOAD_BYTES).')
param maxPayloadBytes int

@description('How alerts are correlated into work items: alert or rule (CORRELATION_MODE).')
param correlationMode string

@description('Minutes after resolution during which a new firing reopens the work item (REOPEN_WINDOW_MINUTES).')
param reopenWindowMinutes int

@description('State changes within the flap window that mark a work item as flapping (FLAP_THRESHOLD).')
param flapThreshold int

@description('Length of the flap window, in minutes (FLAP_WINDOW_MINUTES).')
param flapWindowMinutes int

@description('A person\'s acknowledge, close and reopen reach the Azure alerts (SYNC_ALERT_STATE).')
param syncAlertState bool

@description('Azure Resource Manager endpoint of this cloud, without a trailing slash (ARM_ENDPOINT).')
param armEndpoint string

@description('Client id the web board signs in with (BOARD_CLIENT_ID).')
param boardClientId string

@description('Scope the web board requests: <Application ID URI>/user_impersonation (BOARD_API_SCOPE).')
param boardApiScope string

@description('Days after which resolved and closed work items are deleted (RETENTION_DAYS).')
param retentionDays int

@description('Comma-separated tenant ids whose callers see every tenant (AAD_OPERATOR_TENANT_IDS); empty: none.')
param operatorTenantIds string

var storageSuffix = environment().suffixes.storage

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // Functions host and our code: identity-based storage connection.
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: 'https://${storageAccountName}.blob.${storageSuffix}'
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: 'https://${storageAccountName}.queue.${storageSuffix}'
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: 'https://${storageAccountName}.table.${storageSuffix}'
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // Functions host: telemetry with Entra ID authentication.
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD;ClientId=${identityClientId}'
        }
        // Token validation.
        {
          name: 'AAD_TENANT_IDS'
          value: tenantIds
        }
        {
          name: 'AAD_AUDIENCES'
          value: audiences
        }
        {
          name: 'AAD_ALLOWED_CALLER_APP_IDS'
          value: allowedCallerAppIds
        }
        {
          name: 'AAD_REQUIRED_ROLE'
          value: requiredRole
        }
        {
          name: 'AAD_AUTHORITY_HOST'
          value: authorityHost
        }
        // Intake and work item policy.
        {
          name: 'MAX_PAYLOAD_BYTES'
          value: string(maxPayloadBytes)
        }
        {
          name: 'CORRELATION_MODE'
          value: correlationMode
        }
        {
          name: 'REOPEN_WINDOW_MINUTES'
          value: string(reopenWindowMinutes)
        }
        {
          name: 'FLAP_THRESHOLD'
          value: string(flapThreshold)
        }
        {
          name: 'FLAP_WINDOW_MINUTES'
          value: string(flapWindowMinutes)
        }
        // Two-way sync with Azure Monitor (docs/alert-sync.md).
        {
          name: 'SYNC_ALERT_STATE'
          value: string(syncAlertState)
        }
        {
          name: 'ARM_ENDPOINT'
          value: armEndpoint
        }
        // The web board's sign-in (GET /api/board-config).
        {
          name: 'BOARD_CLIENT_ID'
          value: boardClientId
        }
        {
          name: 'BOARD_API_SCOPE'
          value: boardApiScope
        }
        {
          name: 'RETENTION_DAYS'
          value: string(retentionDays)
        }
        {
          name: 'AAD_OPERATOR_TENANT_IDS'
          value: operatorTenantIds
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName

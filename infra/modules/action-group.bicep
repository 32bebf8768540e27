// The action group that calls the receiver through a Secure Webhook, and an optional
// example alert rule wired to it.
//
// Microsoft.Insights/actionGroups has no `secureWebhookReceivers` property: a secure
// webhook is a webhook receiver with useAadAuth, the app registration's object id and
// its Application ID URI. Creating it requires the deploying principal to own that
// app registration (entra-app.bicep makes it an owner).

param tags object = {}
param actionGroupName string

@description('Short name shown in notifications (at most 12 characters).')
@maxLength(12)
param groupShortName string

@description('HTTPS URL of the receive_alert function.')
param webhookUrl string

@description('Object id of the app registration (not its client id).')
param applicationObjectId string

@description('Application ID URI of the app registration.')
param applicationIdUri string

@description('Deploy the example metric alert rule.')
param deployExampleAlertRule bool = false

@description('Resource the example alert rule watches (the receiver storage account).')
param exampleAlertTargetId string = ''

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: groupShortName
    enabled: true
    webhookReceivers: [
      {
        name: 'itsm-receiver'
        serviceUri: webhookUrl
        useCommonAlertSchema: true
        useAadAuth: true
        objectId: applicationObjectId
        identifierUri: applicationIdUri
        tenantId: tenant().tenantId
      }
    ]
  }
}

// Example: storage availability of the receiver itself dropping below 100 %.
// Any alert rule (metric, log, activity log, service health...) can use the
// action group the same way: list its id under actions.
resource exampleAlertRule 'Microsoft.Insights/metricAlerts@2018-03-01' = if (deployExampleAlertRule) {
  name: '${actionGroupName}-example-storage-availability'
  location: 'global'
  tags: tags
  properties: {
    description: 'Example rule: the receiver storage account served less than 100 % of requests successfully.'
    severity: 2
    enabled: true
    scopes: [
      exampleAlertTargetId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'storage-availability'
          metricNamespace: 'Microsoft.Storage/storageAccounts'
          metricName: 'Availability'
          operator: 'LessThan'
          threshold: 100
          timeAggregation: 'Average'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output actionGroupId string = actionGroup.id

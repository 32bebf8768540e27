// Assigns the alert state role (alert-state-role.bicep) to the app's identity in one
// subscription: its alerts, and only its alerts, can be acknowledged and closed by the app.
targetScope = 'subscription'

@description('Name (a GUID) of the custom role definition.')
param roleDefinitionName string

@description('Principal (object) id of the function app identity.')
param principalId string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionName)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

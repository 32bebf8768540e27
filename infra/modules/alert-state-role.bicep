// A custom Azure role holding only what the alert sync needs (docs/alert-sync.md):
// change an Azure Monitor alert's user state, and read the alert (the sync reads the
// state first, so that a state the alert already has is not set again). Monitoring
// Contributor would also let the app edit alert rules, action groups and diagnostics.
targetScope = 'subscription'

@description('Display name of the role (unique in the tenant).')
param roleName string

@description('Subscriptions where the role may be assigned.')
@minLength(1)
param assignableSubscriptionIds array

// The actions of Alerts Management's change state and get by id.
var alertStateActions = [
  'Microsoft.AlertsManagement/alerts/changestate/action'
  'Microsoft.AlertsManagement/alerts/read'
]

resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, roleName)
  properties: {
    roleName: roleName
    description: 'Read Azure Monitor alerts and change their state (New, Acknowledged, Closed). Nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: alertStateActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [for id in assignableSubscriptionIds: '/subscriptions/${id}']
  }
}

@description('Name (a GUID) of the role definition; the same in every assignable subscription.')
output roleDefinitionName string = role.name

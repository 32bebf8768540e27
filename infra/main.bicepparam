// Parameters for main.bicep. Change what you need, leave the rest as is:
//   az deployment group create --resource-group <rg> \
//     --template-file infra/main.bicep --parameters infra/main.bicepparam
using 'main.bicep'

// Short lowercase name (2-9 letters or digits) used in every resource name.
param baseName = 'itsm'

// Display name of the app registration in Entra ID.
param appDisplayName = 'Azure Monitor ITSM receiver'

// Short name of the action group, shown in notifications (at most 12 characters).
param actionGroupShortName = 'itsm'

// true: also deploy an example metric alert rule wired to the action group.
param deployExampleAlertRule = false

// alert: one work item per Azure Monitor alert; rule: one per alert rule and target.
param correlationMode = 'alert'

// A new firing within this many minutes of resolution reopens the work item.
param reopenWindowMinutes = 60

// Who may use the work item API: object ids of users, groups (Entra ID P1 or P2) and
// service principals, per role (docs/deploy.md, "Access the work item API").
//   az ad signed-in-user show --query id -o tsv     # your own object id
param workItemsReaderUserIds = []
param workItemsWriterUserIds = []

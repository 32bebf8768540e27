"""The work item API: list, read and update work items, look up the CMDB.

- `security`: who may call (app roles, the delegated scope) and who did what;
- `params`: request parsing and validation, pure functions;
- `views`: stored entities as the API's JSON;
- `handlers`: the HTTP functions' work (function_app.py calls them).
"""

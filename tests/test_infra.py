"""Checks of infra/ without an Azure subscription or a Bicep CLI.

1. Every .bicep file parses with pycep-parser (each parse in a subprocess with a
   timeout: pycep can hang on some inputs).
2. Structural assertions on the parse trees: the secure webhook wiring (app
   registration, AzNS service principal, app role assignment, action group), the
   storage hardening, the Flex Consumption function app, least-privilege RBAC.
3. checkov (own virtualenv, see scripts/install-checkov.sh) passes offline.
4. Settings parity between shared/config.py, the Bicep, local.settings.json.example
   and the README's configuration table.

pycep represents a string literal and a reference to a parameter or variable the
same way (a plain string); `resolve` follows references inside one file.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import config

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
MODULES = INFRA / "modules"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
CHECKOV_CONFIG = INFRA / ".checkov.yaml"

PARSE_TIMEOUT_S = 60
CHECKOV_TIMEOUT_S = 600

AZNS_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
GRAPH_EXTENSION_ALIAS = "microsoftGraphV1"
GRAPH_EXTENSION_REF = "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"

# Built-in Azure roles the function app identity may hold, and nothing else.
ALLOWED_ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

# App settings deprecated or rejected on Flex Consumption (runtime, scale and the
# deployment package live in functionAppConfig there), plus key-based storage.
DEPRECATED_FLEX_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "AzureWebJobsStorage",  # the connection-string form carries an account key
    "AzureWebJobsDashboard",
    "APPINSIGHTS_INSTRUMENTATIONKEY",  # local auth is disabled on Application Insights
}
DEPRECATED_FLEX_SITE_CONFIG = {
    "linuxFxVersion",
    "windowsFxVersion",
    "alwaysOn",
    "use32BitWorkerProcess",
}

# ---------------------------------------------------------------------------
# Settings parity allow-lists. Each name is here for the reason given.
# ---------------------------------------------------------------------------

# Read by shared/config.py, deliberately not set by the Bicep.
NOT_SET_BY_BICEP = {
    "AzureWebJobsStorage": (
        "local form: a connection string (Azurite); in Azure the identity-based form is set"
    ),
    "AzureWebJobsStorage__accountName": (
        "shorthand for the three __*ServiceUri settings; the Bicep sets the URIs, "
        "which also hold outside the public cloud"
    ),
    "AAD_JWKS_URI": (
        "optional override; unset, the keys URI is derived from AAD_AUTHORITY_HOST and the tenant"
    ),
}

# Set in Azure for the Functions host; our code does not read them.
HOST_ONLY = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where the host sends telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra ID auth for telemetry (no local auth)",
}

# Allowed in local.settings.json.example besides what config.py reads: Core Tools needs them.
LOCAL_HOST_ONLY = {
    "FUNCTIONS_WORKER_RUNTIME": (
        "Core Tools picks the Python worker from it (deprecated on Flex, so not in the Bicep)"
    ),
    "AzureWebJobsFeatureFlags": "Core Tools feature flags (e.g. worker indexing on older versions)",
}

# Read by config.py but left out of local.settings.json.example (none so far).
NOT_IN_LOCAL_EXAMPLE: dict[str, str] = {}


# ---------------------------------------------------------------------------
# Parsing and tree helpers
# ---------------------------------------------------------------------------

_PARSE_SCRIPT = """
import json, sys
from pathlib import Path
from pycep import BicepParser
tree = BicepParser().parse(file_path=Path(sys.argv[1]))
print(json.dumps(tree, default=str))
"""


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    """Parse one Bicep file with pycep in a subprocess, so that a hang is a failure."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PARSE_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            timeout=PARSE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"pycep did not parse {path.relative_to(REPO)} within {PARSE_TIMEOUT_S} s")
    if proc.returncode != 0:
        pytest.fail(f"pycep cannot parse {path.relative_to(REPO)}:\n{proc.stderr[-3000:]}")
    tree: dict[str, Any] = json.loads(proc.stdout)
    return tree


def module(name: str) -> dict[str, Any]:
    return parse(MODULES / name)


def main_tree() -> dict[str, Any]:
    return parse(INFRA / "main.bicep")


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's own properties, unwrapping `if (...)` and `for` forms."""
    cfg: dict[str, Any] = resource["config"]
    while "loop_type" in cfg or ("condition" in cfg and isinstance(cfg.get("config"), dict)):
        cfg = cfg["config"]
    return cfg


def resources_of_type(tree: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {
        name: res
        for name, res in tree.get("resources", {}).items()
        if res["type"].lower() == rtype.lower()
    }


def only_resource(tree: dict[str, Any], rtype: str) -> tuple[str, dict[str, Any]]:
    found = {n: r for n, r in resources_of_type(tree, rtype).items() if not r["existing"]}
    assert len(found) == 1, f"expected exactly one {rtype}, found {sorted(found)}"
    return next(iter(found.items()))


def resolve(tree: dict[str, Any], value: Any) -> Any:
    """Follow a reference to a variable, or to a parameter's default, within one file."""
    seen: set[str] = set()
    while isinstance(value, str) and value not in seen:
        seen.add(value)
        if value in tree.get("variables", {}):
            value = tree["variables"][value]["value"]
        elif (
            value in tree.get("parameters", {}) and tree["parameters"][value]["default"] is not None
        ):
            value = tree["parameters"][value]["default"]
        else:
            break
    return value


def interpolate(tree: dict[str, Any], value: Any) -> Any:
    """Resolve a reference, then substitute `${name}` parts that resolve to literal strings."""
    value = resolve(tree, value)
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        part = resolve(tree, match.group(1))
        return part if isinstance(part, str) and part != match.group(1) else match.group(0)

    return re.sub(r"\$\{(\w+)\}", substitute, value)


def dotted(expr: Any) -> str:
    """Flatten a property-access expression: `entraApp.outputs.clientId`, `tenant().tenantId`."""
    if isinstance(expr, dict) and "operator" in expr:
        op = expr["operator"]
        if op["type"] == "property_accessor":
            return f"{dotted(op['operands']['operand_1'])}.{dotted(op['operands']['operand_2'])}"
    if isinstance(expr, dict) and "function" in expr:
        return f"{expr['function']['type']!s}()"
    if isinstance(expr, str):
        return expr
    raise AssertionError(f"not a reference expression: {expr!r}")


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def all_keys(node: Any) -> set[str]:
    return {k for n in walk(node) if isinstance(n, dict) for k in n}


def module_call(tree: dict[str, Any], path: str) -> dict[str, Any]:
    calls = [m for m in tree["modules"].values() if m["detail"]["path"] == path]
    assert len(calls) == 1, f"main.bicep should call {path} exactly once"
    return body(calls[0])


def module_symbol(tree: dict[str, Any], path: str) -> str:
    modules: dict[str, Any] = tree["modules"]
    return next(n for n, m in modules.items() if m["detail"]["path"] == path)


# ---------------------------------------------------------------------------
# 1. Parsing
# ---------------------------------------------------------------------------


def test_infra_has_main_and_modules() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in BICEP_FILES}
    assert {
        "main.bicep",
        "modules/entra-app.bicep",
        "modules/storage.bicep",
        "modules/function-app.bicep",
        "modules/rbac.bicep",
        "modules/monitoring.bicep",
        "modules/action-group.bicep",
        "modules/alert-state-role.bicep",
        "modules/alert-state-assignment.bicep",
    } <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_file_parses(path: Path) -> None:
    tree = parse(path)
    assert tree.get("resources") or tree.get("modules"), "a Bicep file that declares nothing"


def test_every_module_main_calls_exists() -> None:
    for call in main_tree()["modules"].values():
        assert call["type"] == "local"
        assert (INFRA / call["detail"]["path"]).is_file(), call["detail"]["path"]


def test_graph_extension_through_bicepconfig_alias_only_in_its_module() -> None:
    cfg = json.loads((INFRA / "bicepconfig.json").read_text())
    assert cfg["extensions"][GRAPH_EXTENSION_ALIAS] == GRAPH_EXTENSION_REF
    for path in BICEP_FILES:
        extensions = parse(path).get("extensions", {})
        if path.name == "entra-app.bicep":
            # `extension microsoftGraphV1`, not the inline `extension 'br:...'` form.
            assert set(extensions) == {GRAPH_EXTENSION_ALIAS}
        else:
            # Keeps every other file readable by checkov's older pycep.
            assert not extensions, f"{path.name} declares an extension"
    graph_types = {
        res["type"]
        for path in BICEP_FILES
        if path.name != "entra-app.bicep"
        for res in parse(path).get("resources", {}).values()
        if res["type"].startswith("Microsoft.Graph/")
    }
    assert not graph_types, "Microsoft Graph resources belong in modules/entra-app.bicep"


# ---------------------------------------------------------------------------
# 2a. Entra ID: app registration, service principals, app role assignment
# ---------------------------------------------------------------------------


def _entra() -> dict[str, Any]:
    return module("entra-app.bicep")


def _applications() -> dict[str, dict[str, Any]]:
    return {
        name: body(res)
        for name, res in resources_of_type(_entra(), "Microsoft.Graph/applications").items()
        if not res["existing"]
    }


def _application() -> tuple[str, dict[str, Any]]:
    """The application as created: keyed on the module's uniqueName parameter (the other
    declaration is the second write of the same application that pre-authorizes clients)."""
    created = [(n, a) for n, a in _applications().items() if a["uniqueName"] == "uniqueName"]
    assert len(created) == 1, f"expected one created application, found {created}"
    return created[0]


def _app_roles() -> dict[str, dict[str, Any]]:
    tree = _entra()
    roles = {}
    for role in _application()[1]["appRoles"]:
        value = resolve(tree, role["value"])
        roles[value] = {k: resolve(tree, v) for k, v in role.items()}
    return roles


def test_application_has_identifier_uri_and_v2_tokens() -> None:
    tree = _entra()
    _, app = _application()
    assert app["uniqueName"], "the Graph extension keys applications on uniqueName"
    uris = [resolve(tree, u) for u in app["identifierUris"]]
    # Without one, Azure Monitor fails with AadWebhookApplicationUriNotFound.
    assert uris, "no Application ID URI"
    assert all(uris), "an empty Application ID URI"
    assert app["api"]["requestedAccessTokenVersion"] == 2


def test_default_identifier_uri_is_tenant_scoped() -> None:
    tree = _entra()
    uri = resolve(tree, "identifierUri")
    default = uri["operator"]["operands"]["true_value"] if isinstance(uri, dict) else uri
    assert default.startswith("api://${tenant().tenantId}/"), default


def test_application_roles() -> None:
    roles = _app_roles()
    webhook = roles[config.DEFAULT_REQUIRED_ROLE]
    assert webhook["allowedMemberTypes"] == ["Application"]
    assert webhook["isEnabled"] is True
    for value in ("WorkItems.Read", "WorkItems.ReadWrite"):
        assert sorted(roles[value]["allowedMemberTypes"]) == ["Application", "User"], value
    ids = [r["id"] for r in roles.values()]
    assert len(set(map(json.dumps, ids))) == len(ids), "app role ids must differ"


def test_work_item_api_scope_for_delegated_tokens() -> None:
    """Client apps need a scope of our API to get user tokens; the API requires it in `scp`."""
    from shared.api import security

    tree = _entra()
    _, app = _application()
    scopes = [
        {k: resolve(tree, v) for k, v in s.items()} for s in app["api"]["oauth2PermissionScopes"]
    ]
    (scope,) = scopes
    assert scope["value"] == security.API_SCOPE == "user_impersonation"
    assert scope["type"] == "User", "users may consent: what they can do still needs their role"
    assert scope["isEnabled"] is True
    for text in ("adminConsentDisplayName", "adminConsentDescription"):
        assert scope[text], f"{text} is required by Entra"
    assert scope["userConsentDisplayName"]
    assert scope["userConsentDescription"]
    role_ids = [json.dumps(r["id"]) for r in _app_roles().values()]
    assert json.dumps(scope["id"]) not in role_ids, "a scope id must differ from the role ids"
    outputs = {name: out["value"] for name, out in tree["outputs"].items()}
    assert resolve(tree, outputs["workItemsScope"]) == security.API_SCOPE
    roles = _app_roles()
    assert security.READ_ROLE in roles
    assert security.WRITE_ROLE in roles


def test_deployer_owns_the_application() -> None:
    _, app = _application()
    owners = [dotted(o) for o in app["owners"]["relationships"]]
    assert "deployer().objectId" in owners, "AadWebhookResourceNotOwnedByCaller without it"


def test_azns_service_principal_declared_by_app_id() -> None:
    tree = _entra()
    by_app_id = {
        json.dumps(resolve(tree, body(res)["appId"])): name
        for name, res in resources_of_type(tree, "Microsoft.Graph/servicePrincipals").items()
    }
    assert json.dumps(AZNS_APP_ID) in by_app_id
    main = main_tree()
    assert resolve(main, "aznsAppId") == AZNS_APP_ID == config.AZNS_AAD_WEBHOOK_APP_ID
    assert module_call(main, "modules/entra-app.bicep")["params"]["aznsAppId"] == "aznsAppId"


def test_secure_webhook_role_assigned_to_azns() -> None:
    tree = _entra()
    app_name, _ = _application()
    sps = {
        name: body(res)
        for name, res in resources_of_type(tree, "Microsoft.Graph/servicePrincipals").items()
    }
    azns_sp = next(n for n, sp in sps.items() if resolve(tree, sp["appId"]) == AZNS_APP_ID)
    our_sp = next(n for n, sp in sps.items() if dotted(sp["appId"]) == f"{app_name}.appId")

    single = [
        res
        for res in resources_of_type(tree, "Microsoft.Graph/appRoleAssignedTo").values()
        if "loop_type" not in res["config"]
    ]
    assert len(single) == 1, "one assignment outside the loops: AzNS's"
    assignment = body(single[0])
    assert dotted(assignment["principalId"]) == f"{azns_sp}.id"
    assert dotted(assignment["resourceId"]) == f"{our_sp}.id"
    webhook_role_id = _app_roles()[config.DEFAULT_REQUIRED_ROLE]["id"]
    assert resolve(tree, assignment["appRoleId"]) == webhook_role_id


def test_entra_outputs_feed_the_action_group_and_settings() -> None:
    tree = _entra()
    app_name, app = _application()
    outputs = {name: out["value"] for name, out in tree["outputs"].items()}
    assert dotted(outputs["applicationObjectId"]) == f"{app_name}.id"
    assert dotted(outputs["clientId"]) == f"{app_name}.appId"
    assert outputs["applicationIdUri"] in app["identifierUris"]
    assert resolve(tree, outputs["secureWebhookRole"]) == config.DEFAULT_REQUIRED_ROLE


AZURE_CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def test_azure_cli_is_pre_authorized_for_the_api_scope() -> None:
    """So that `az account get-access-token --scope <URI>/user_impersonation` gets a token
    without a consent prompt; written after the scope exists (a second write of the app)."""
    tree = _entra()
    app_name, _ = _application()
    (update,) = [a for n, a in _applications().items() if n != app_name]
    assert dotted(update["uniqueName"]) == f"{app_name}.uniqueName", "the same application"
    api = update["api"]
    # The update carries what it must not change: the scopes it references, v2 tokens.
    assert dotted(api["oauth2PermissionScopes"]) == f"{app_name}.api.oauth2PermissionScopes"
    assert api["requestedAccessTokenVersion"] == 2
    loop = api["preAuthorizedApplications"]
    assert loop["loop_type"]["detail"]["array_name"] == "preAuthorizedClientAppIds"
    entry = loop["config"]
    assert entry["appId"] == loop["loop_type"]["detail"]["item_name"]
    assert entry["delegatedPermissionIds"] == ["workItemsScopeId"]
    assert resolve(tree, "preAuthorizedClientAppIds") == [AZURE_CLI_APP_ID]
    # delegatedPermissionIds is Microsoft Graph's name (permissionIds is the portal's).
    assert "permissionIds" not in all_keys(update)


def _role_assignment_loops() -> dict[str, tuple[str, str]]:
    """Looped app role assignments: role id variable -> (principal list, resource id)."""
    tree = _entra()
    found = {}
    for res in resources_of_type(tree, "Microsoft.Graph/appRoleAssignedTo").values():
        cfg = res["config"]
        if "loop_type" not in cfg:
            continue
        detail = cfg["loop_type"]["detail"]
        array = detail["array_name"]["function"]
        assert array["type"] == "union", "duplicates would fail: union removes them"
        inner = cfg["config"]
        assert inner["principalId"] == detail["item_name"]
        found[inner["appRoleId"]] = (array["parameters"]["arg_1"], dotted(inner["resourceId"]))
    return found


def test_work_item_roles_are_granted_to_the_listed_principals() -> None:
    tree = _entra()
    sps = resources_of_type(tree, "Microsoft.Graph/servicePrincipals")
    app_name, _ = _application()
    our_sp = next(n for n, sp in sps.items() if dotted(body(sp)["appId"]) == f"{app_name}.appId")
    loops = _role_assignment_loops()
    roles = _app_roles()
    by_role = {json.dumps(resolve(tree, role_var)): v for role_var, v in loops.items()}
    read = by_role[json.dumps(roles["WorkItems.Read"]["id"])]
    write = by_role[json.dumps(roles["WorkItems.ReadWrite"]["id"])]
    assert read == ("workItemsReadPrincipalIds", f"{our_sp}.id")
    assert write == ("workItemsReadWritePrincipalIds", f"{our_sp}.id")
    for name in ("workItemsReadPrincipalIds", "workItemsReadWritePrincipalIds"):
        assert tree["parameters"][name]["default"] == [], f"{name} is optional"


def test_main_takes_user_group_and_service_principal_lists_per_role() -> None:
    main = main_tree()
    params = main["parameters"]
    call = module_call(main, "modules/entra-app.bicep")["params"]
    for role, module_param in (
        ("Reader", "workItemsReadPrincipalIds"),
        ("Writer", "workItemsReadWritePrincipalIds"),
    ):
        names = [f"workItems{role}{kind}Ids" for kind in ("User", "Group", "ServicePrincipal")]
        for name in names:
            assert params[name]["default"] == [], f"{name} is optional"
        passed = call[module_param]["function"]
        assert passed["type"] == "union"
        assert list(passed["parameters"].values()) == names
    outputs = {name: out["value"] for name, out in main["outputs"].items()}
    assert outputs["workItemsApiScope"] == (
        "${entraApp.outputs.applicationIdUri}/${entraApp.outputs.workItemsScope}"
    )


def test_base_name_is_checked_before_anything_is_named() -> None:
    """Only lowercase letters and digits (the storage account name allows nothing else):
    every other character is collected and the deployment fails naming it."""
    import string

    main = main_tree()
    variables = main["variables"]
    assert resolve(main, "baseNameAllowed") == string.ascii_lowercase + string.digits
    rejected = variables["baseNameRejected"]["value"]
    assert rejected["loop_type"]["detail"]["array_name"]["function"]["type"] == "range"
    keep = rejected["config"]["operator"]["operands"]
    assert keep["condition"]["function"]["parameters"]["container"] == "baseNameAllowed"
    assert keep["true_value"] == ""
    # A valid name looks up "ok" (the name itself); any other looks up a key that is not
    # there, and the deployment fails in validation quoting that key: the message.
    lookup = variables["checkedBaseName"]["value"]["operator"]
    assert lookup["type"] == "index_accessor"
    table = resolve(main, lookup["operands"]["operand_1"])
    assert table == {"ok": "baseName"}
    key = lookup["operands"]["operand_2"]["operator"]["operands"]
    tested = key["condition"]["function"]["parameters"]["item_to_test"]["function"]
    assert tested["parameters"]["input_array"] == "baseNameRejected"
    assert key["true_value"] == "ok"
    assert key["false_value"] not in table
    assert "lowercase letters and digits only" in key["false_value"]
    # Every name derives from the checked value through resourceToken, the storage
    # account name from it directly.
    token = json.dumps(variables["resourceToken"]["value"])
    assert "checkedBaseName" in token
    assert 'baseName"' not in token.replace("checkedBaseName", "")
    storage = variables["storageAccountName"]["value"]["function"]["parameters"]
    assert storage["original_value"].startswith("st${checkedBaseName}")
    lengths = {d["type"]: d["argument"] for d in main["parameters"]["baseName"]["decorators"]}
    assert (lengths["min_length"], lengths["max_length"]) == (2, 9)


# ---------------------------------------------------------------------------
# 2b. Action group and example alert rule
# ---------------------------------------------------------------------------


def _action_group() -> dict[str, Any]:
    _, res = only_resource(module("action-group.bicep"), "Microsoft.Insights/actionGroups")
    assert res["api_version"] == "2023-01-01"
    return body(res)


def test_action_group_secure_webhook_receiver() -> None:
    group = _action_group()
    assert group["location"] == "global"
    props = group["properties"]
    assert "secureWebhookReceivers" not in props, (
        "no such property: use webhookReceivers with useAadAuth"
    )
    (receiver,) = props["webhookReceivers"]
    assert receiver["useAadAuth"] is True
    assert receiver["useCommonAlertSchema"] is True
    assert receiver["objectId"] == "applicationObjectId"
    assert receiver["identifierUri"] == "applicationIdUri"
    assert dotted(receiver["tenantId"]) == "tenant().tenantId"
    assert receiver["serviceUri"] == "webhookUrl"


def test_main_wires_action_group_to_the_application_object_id() -> None:
    main = main_tree()
    entra = module_symbol(main, "modules/entra-app.bicep")
    functions = module_symbol(main, "modules/function-app.bicep")
    params = module_call(main, "modules/action-group.bicep")["params"]
    # The object id of the application, not its client id nor its service principal's id.
    assert dotted(params["applicationObjectId"]) == f"{entra}.outputs.applicationObjectId"
    assert dotted(params["applicationIdUri"]) == f"{entra}.outputs.applicationIdUri"
    assert (
        params["webhookUrl"] == f"https://${{{functions}.outputs.defaultHostName}}${{webhookPath}}"
    )
    assert resolve(main, "webhookPath") == "/api/alerts"
    outputs = module("function-app.bicep")["outputs"]
    assert dotted(outputs["defaultHostName"]["value"]).endswith(".properties.defaultHostName")


def test_webhook_path_is_the_receive_alert_route() -> None:
    """`/api/alerts` in main.bicep is host.json's route prefix plus receive_alert's route."""
    prefix = json.loads((REPO / "host.json").read_text())["extensions"]["http"]["routePrefix"]
    tree = ast.parse((REPO / "function_app.py").read_text())
    routes = [
        keyword.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "receive_alert"
        for decorator in node.decorator_list
        if isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Attribute)
        and decorator.func.attr == "route"
        for keyword in decorator.keywords
        if keyword.arg == "route"
        and isinstance(keyword.value, ast.Constant)
        and isinstance(keyword.value.value, str)
    ]
    assert routes, "receive_alert has no @app.route(route=...) in function_app.py"
    path = "/".join(part.strip("/") for part in ("", prefix, routes[0]) if part)
    assert resolve(main_tree(), "webhookPath") == f"/{path}"


def test_example_alert_rule_is_optional_and_uses_the_action_group() -> None:
    tree = module("action-group.bicep")
    rules = resources_of_type(tree, "Microsoft.Insights/metricAlerts")
    assert len(rules) == 1
    (rule,) = rules.values()
    assert rule["config"]["condition"] == "deployExampleAlertRule"
    assert resolve(tree, "deployExampleAlertRule") is False
    assert resolve(main_tree(), "deployExampleAlertRule") is False
    group_symbol, _ = only_resource(tree, "Microsoft.Insights/actionGroups")
    actions = [dotted(a["actionGroupId"]) for a in body(rule)["properties"]["actions"]]
    assert actions == [f"{group_symbol}.id"]


# ---------------------------------------------------------------------------
# 2c. Storage
# ---------------------------------------------------------------------------


def test_storage_account_hardening() -> None:
    _, res = only_resource(module("storage.bicep"), "Microsoft.Storage/storageAccounts")
    props = body(res)["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False


def test_blob_containers_are_private() -> None:
    tree = module("storage.bicep")
    for res in resources_of_type(
        tree, "Microsoft.Storage/storageAccounts/blobServices/containers"
    ).values():
        assert body(res)["properties"]["publicAccess"] == "None"


def test_storage_layout_matches_the_code() -> None:
    main = main_tree()
    params = module_call(main, "modules/storage.bicep")["params"]
    queues = [interpolate(main, q) for q in resolve(main, params["queueNames"])]
    assert queues == [
        config.ALERTS_QUEUE,
        config.POISON_QUEUE,
        config.ALERT_SYNC_QUEUE,
        config.ALERT_SYNC_POISON_QUEUE,
    ]
    containers = [interpolate(main, c) for c in resolve(main, params["containerNames"])]
    assert config.CLAIM_CHECK_CONTAINER in containers
    function_app = module_call(main, "modules/function-app.bicep")
    assert resolve(main, function_app["params"]["deploymentContainerName"]) in containers
    tables = resolve(main, params["tableNames"])
    from shared import table_keys, workitem_index

    # Exactly the tables the code writes (it also creates them on demand, but the
    # deployment should not leave unused ones behind or miss one).
    assert sorted(tables) == sorted(
        [
            table_keys.WORKITEMS_TABLE,
            table_keys.CMDB_TABLE,
            workitem_index.INDEX_TABLE,
            config.ALERT_SYNC_TABLE,
        ]
    )
    for table in tables:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", table), f"invalid table name {table!r}"
    # One place to change table names: a single variable in main.bicep.
    assert params["tableNames"] in main["variables"]


# ---------------------------------------------------------------------------
# 2d. Function app on Flex Consumption
# ---------------------------------------------------------------------------


def _function_app() -> dict[str, Any]:
    _, res = only_resource(module("function-app.bicep"), "Microsoft.Web/sites")
    return body(res)


def bicep_app_settings() -> dict[str, Any]:
    settings = _function_app()["properties"]["siteConfig"]["appSettings"]
    names = [s["name"] for s in settings]
    assert len(names) == len(set(names)), "an app setting is set twice"
    return {s["name"]: s["value"] for s in settings}


def test_flex_consumption_plan() -> None:
    _, res = only_resource(module("function-app.bicep"), "Microsoft.Web/serverfarms")
    plan = body(res)
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True


def test_function_app_runtime_identity_and_https() -> None:
    tree = module("function-app.bicep")
    site = _function_app()
    assert site["kind"] == "functionapp,linux"
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    flex = props["functionAppConfig"]
    assert flex["runtime"] == {"name": "python", "version": "3.11"}
    deployment = flex["deployment"]["storage"]
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"]["type"] == "UserAssignedIdentity"
    assert site["identity"]["type"] == "UserAssigned"
    assert resolve(tree, "identityId") == "identityId", "identity comes from main.bicep"


def test_no_settings_deprecated_on_flex() -> None:
    site = _function_app()
    settings = set(bicep_app_settings())
    assert not settings & DEPRECATED_FLEX_SETTINGS
    assert not set(site["properties"]["siteConfig"]) & DEPRECATED_FLEX_SITE_CONFIG
    assert not any("linuxFxVersion" in k for k in all_keys(site))


def test_identity_based_storage_settings() -> None:
    tree = module("function-app.bicep")
    settings = bicep_app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    for kind in ("blob", "queue", "table"):
        uri = settings[f"AzureWebJobsStorage__{kind}ServiceUri"]
        assert uri == f"https://${{storageAccountName}}.{kind}.${{storageSuffix}}", uri
    assert dotted(resolve(tree, "storageSuffix")) == "environment().suffixes.storage"
    assert "AzureWebJobsStorage" not in settings, "the connection-string form needs shared keys"


def test_application_insights_uses_entra_auth() -> None:
    settings = bicep_app_settings()
    assert (
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "Authorization=AAD;ClientId=${identityClientId}"
    )
    _, res = only_resource(module("monitoring.bicep"), "Microsoft.Insights/components")
    props = body(res)["properties"]
    assert props["DisableLocalAuth"] is True
    assert dotted(props["WorkspaceResourceId"]).endswith(".id")


def test_token_settings_come_from_the_deployment() -> None:
    main = main_tree()
    entra = module_symbol(main, "modules/entra-app.bicep")
    settings = bicep_app_settings()
    params = module_call(main, "modules/function-app.bicep")["params"]

    def passed(setting: str) -> Any:
        """What main.bicep passes to the function-app.bicep parameter the setting is set from."""
        value = settings[setting]
        assert value in module("function-app.bicep")["parameters"], setting
        return params[value]

    assert dotted(passed("AAD_TENANT_IDS")) == "tenant().tenantId"
    assert passed("AAD_AUDIENCES") == (
        f"${{{entra}.outputs.applicationIdUri}},${{{entra}.outputs.clientId}}"
    )
    assert resolve(main, passed("AAD_ALLOWED_CALLER_APP_IDS")) == AZNS_APP_ID
    assert dotted(passed("AAD_REQUIRED_ROLE")) == f"{entra}.outputs.secureWebhookRole"
    authority = resolve(main, passed("AAD_AUTHORITY_HOST"))
    # environment().authentication.loginEndpoint, its trailing slash cut off.
    cond = authority["operator"]["operands"]
    assert cond["condition"]["function"]["type"] == "ends_with"
    assert cond["true_value"]["function"]["type"] == "substring"
    assert (
        dotted(resolve(main, cond["false_value"])) == "environment().authentication.loginEndpoint"
    )


def test_policy_defaults_match_config_py() -> None:
    """The Bicep's defaults are config.py's defaults: a deployment changes nothing by itself."""
    main = main_tree()
    settings = bicep_app_settings()
    params = module_call(main, "modules/function-app.bicep")["params"]
    defaults = config.load_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "AAD_TENANT_IDS": "aaaabbbb-0000-cccc-1111-dddd2222eeee",
            "AAD_AUDIENCES": "api://example",
        }
    )
    expected = {
        "MAX_PAYLOAD_BYTES": defaults.max_payload_bytes,
        "CORRELATION_MODE": defaults.correlation_mode,
        "REOPEN_WINDOW_MINUTES": defaults.reopen_window_minutes,
        "FLAP_THRESHOLD": defaults.flap_threshold,
        "FLAP_WINDOW_MINUTES": defaults.flap_window_minutes,
        "RETENTION_DAYS": defaults.retention_days,
    }
    for setting, want in expected.items():
        value = settings[setting]
        if isinstance(value, dict):  # string(param)
            (value,) = value["function"]["parameters"].values()
        assert resolve(main, params[value]) == want, setting
    allowed_modes = next(
        d["argument"]
        for d in main["parameters"]["correlationMode"]["decorators"]
        if d["type"] == "allowed"
    )
    assert tuple(allowed_modes) == config.CORRELATION_MODES


# ---------------------------------------------------------------------------
# 2e. RBAC: only the four roles, assigned to the function app identity
# ---------------------------------------------------------------------------


def _role_ids_assigned(tree: dict[str, Any], res: dict[str, Any]) -> list[Any]:
    role = body(res)["properties"]["roleDefinitionId"]["function"]
    assert role["type"] == "subscription_resource_id"
    assert role["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    name = role["parameters"]["resource_name_1"]
    loop = res["config"].get("loop_type")
    if loop and name == loop["detail"]["item_name"]:
        return [resolve(tree, r) for r in resolve(tree, loop["detail"]["array_name"])]
    return [resolve(tree, name)]


def test_only_least_privilege_roles() -> None:
    assigned: list[Any] = []
    for path in BICEP_FILES:
        if path.name == ALERT_STATE_ASSIGNMENT:
            continue  # the custom role: test_alert_state_role_* below
        tree = parse(path)
        for res in resources_of_type(tree, "Microsoft.Authorization/roleAssignments").values():
            assigned += _role_ids_assigned(tree, res)
            props = body(res)["properties"]
            assert props["principalType"] == "ServicePrincipal"
            assert props["principalId"] == "principalId"
    assert sorted(assigned) == sorted(ALLOWED_ROLE_IDS), assigned
    # Role ids are named constants, not inline literals.
    rbac = module("rbac.bicep")
    constants = {resolve(rbac, name) for name in rbac["variables"] if name.endswith("RoleId")}
    assert constants == set(ALLOWED_ROLE_IDS)


ALERT_STATE_ROLE = "alert-state-role.bicep"
ALERT_STATE_ASSIGNMENT = "alert-state-assignment.bicep"
# The operations the alert sync calls (shared/azure_alerts.py): change state, and get by id.
ALERT_STATE_ACTIONS = [
    "Microsoft.AlertsManagement/alerts/changestate/action",
    "Microsoft.AlertsManagement/alerts/read",
]


def test_alert_state_role_holds_only_what_the_sync_needs() -> None:
    tree = module(ALERT_STATE_ROLE)
    assert tree["globals"]["scope"]["value"] == "subscription"
    _, res = only_resource(tree, "Microsoft.Authorization/roleDefinitions")
    props = body(res)["properties"]
    assert props["type"] == "CustomRole"
    (permission,) = props["permissions"]
    assert resolve(tree, permission["actions"]) == ALERT_STATE_ACTIONS
    for kind in ("notActions", "dataActions", "notDataActions"):
        assert permission[kind] == [], kind
    assert not any("*" in action for action in ALERT_STATE_ACTIONS)
    scopes = props["assignableScopes"]
    assert scopes["loop_type"]["detail"]["array_name"] == "assignableSubscriptionIds"
    assert scopes["config"] == "/subscriptions/${id}"
    # Only the role definition and role assignments exist at subscription scope.
    assert set(tree["resources"]) == {"role"}


def test_alert_state_role_is_assigned_to_the_app_identity_in_each_subscription() -> None:
    tree = module(ALERT_STATE_ASSIGNMENT)
    assert tree["globals"]["scope"]["value"] == "subscription"
    _, res = only_resource(tree, "Microsoft.Authorization/roleAssignments")
    props = body(res)["properties"]
    assert props["principalType"] == "ServicePrincipal"
    assert props["principalId"] == "principalId"
    role = props["roleDefinitionId"]["function"]
    assert role["type"] == "subscription_resource_id"
    assert role["parameters"]["resource_name_1"] == "roleDefinitionName"
    main = main_tree()
    (identity,) = resources_of_type(main, "Microsoft.ManagedIdentity/userAssignedIdentities")
    role_module = module_symbol(main, f"modules/{ALERT_STATE_ROLE}")
    definition = module_call(main, f"modules/{ALERT_STATE_ROLE}")
    assert dotted(definition["scope"]) == "subscription()"
    assert definition["params"]["assignableSubscriptionIds"] == "alertSubscriptionIds"
    calls = [
        m for m in main["modules"].values()
        if m["detail"]["path"] == f"modules/{ALERT_STATE_ASSIGNMENT}"
    ]  # fmt: skip
    (call,) = calls
    loop = call["config"]["loop_type"]["detail"]
    assert loop["array_name"] == "alertSubscriptionIds"
    assignment = body(call)
    assert assignment["scope"]["function"]["type"] == "subscription"
    assert assignment["scope"]["function"]["parameters"]["subscription_id"] == loop["item_name"]
    assert dotted(assignment["params"]["principalId"]) == f"{identity}.properties.principalId"
    assert (
        dotted(assignment["params"]["roleDefinitionName"])
        == f"{role_module}.outputs.roleDefinitionName"
    )
    # Default: the deployment's own subscription.
    (default,) = main["parameters"]["alertSubscriptionIds"]["default"]
    assert dotted(default) == "subscription().subscriptionId"


def test_alert_sync_settings_come_from_the_deployment() -> None:
    main = main_tree()
    settings = bicep_app_settings()
    params = module_call(main, "modules/function-app.bicep")["params"]
    (sync,) = settings["SYNC_ALERT_STATE"]["function"]["parameters"].values()
    assert params[sync] == "syncAlertState"
    assert main["parameters"]["syncAlertState"]["default"] is True
    assert config.load_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "AAD_TENANT_IDS": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "AAD_AUDIENCES": "api://example",
        }
    ).alert_sync.enabled
    # ARM_ENDPOINT: this cloud's Resource Manager, without the trailing slash.
    assert params[settings["ARM_ENDPOINT"]] == "armEndpoint"
    assert "environment().resourceManager" in (INFRA / "main.bicep").read_text()


def test_rbac_targets_the_function_app_identity() -> None:
    main = main_tree()
    params = module_call(main, "modules/rbac.bicep")["params"]
    (identity,) = resources_of_type(main, "Microsoft.ManagedIdentity/userAssignedIdentities")
    assert dotted(params["principalId"]) == f"{identity}.properties.principalId"
    fn_params = module_call(main, "modules/function-app.bicep")
    assert dotted(fn_params["params"]["identityId"]) == f"{identity}.id"
    assert dotted(fn_params["params"]["identityClientId"]) == f"{identity}.properties.clientId"
    assert "rbac" in [dotted(d) for d in fn_params.get("dependsOn", [])]


# ---------------------------------------------------------------------------
# 2f. Parameters file and outputs
# ---------------------------------------------------------------------------


def test_bicepparam_sets_only_parameters_of_main() -> None:
    text = (INFRA / "main.bicepparam").read_text()
    assert re.search(r"^using\s+'main\.bicep'\s*$", text, re.M)
    set_params = re.findall(r"^param\s+(\w+)\s*=", text, re.M)
    assert set_params, "main.bicepparam sets no parameter"
    assert set(set_params) <= set(main_tree()["parameters"])


def test_main_outputs() -> None:
    outputs = main_tree()["outputs"]
    for name in (
        "functionAppName",
        "webhookUrl",
        "applicationClientId",
        "applicationIdUri",
        "actionGroupId",
    ):
        assert name in outputs, name


# ---------------------------------------------------------------------------
# 3. checkov, offline, over everything but the Graph module
# ---------------------------------------------------------------------------


def checkov_skips() -> dict[str, str]:
    """skip-check entries of infra/.checkov.yaml with their `#` reasons."""
    skips: dict[str, str] = {}
    in_block = False
    for line in CHECKOV_CONFIG.read_text().splitlines():
        if re.match(r"^\S", line):
            in_block = line.startswith("skip-check:")
            continue
        item = re.match(r"^\s+-\s+(\S+)\s*(?:#\s*(.*))?$", line)
        if in_block and item:
            skips[item.group(1)] = (item.group(2) or "").strip()
    return skips


def test_every_skipped_check_has_a_reason() -> None:
    skips = checkov_skips()
    assert skips, "no skip-check block found"
    for check, reason in skips.items():
        assert re.fullmatch(r"CKV2?_AZURE_\d+", check), check
        assert len(reason) > 20, f"{check} needs a one-line reason"


def test_checkov_skips_only_the_graph_module() -> None:
    text = CHECKOV_CONFIG.read_text()
    block = re.search(r"^skip-path:\n((?:\s+-.*\n)+)", text, re.M)
    assert block
    paths = re.findall(r"-\s+(\S+)", block.group(1))
    assert paths == ["modules/entra-app.bicep"]


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV.relative_to(REPO)} is missing: run scripts/install-checkov.sh")
    env = {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",  # no download of the guideline mapping
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",  # no PyPI version check
        "ANSI_COLORS_DISABLED": "TRUE",
    }
    for var in ("BC_API_KEY", "PRISMA_API_URL"):
        env.pop(var, None)
    cmd = [
        str(CHECKOV),
        "--config-file", str(CHECKOV_CONFIG),
        "--directory", str(INFRA),
        "--framework", "bicep",
        "--skip-download",
        "--output", "json",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=CHECKOV_TIMEOUT_S,
            env=env,
            cwd=REPO,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"checkov did not finish within {CHECKOV_TIMEOUT_S} s")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov exited {proc.returncode} without a JSON report:\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    if isinstance(report, list):  # one report per framework
        (report,) = [r for r in report if r.get("check_type") == "bicep"]
    return {"report": report, "returncode": proc.returncode}


def test_checkov_passes(checkov_report: dict[str, Any]) -> None:
    report = checkov_report["report"]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']}, {c['file_path']})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failures:\n" + "\n".join(failed)
    assert checkov_report["returncode"] == 0


def test_checkov_parsed_every_scanned_file(checkov_report: dict[str, Any]) -> None:
    report = checkov_report["report"]
    assert report["results"]["parsing_errors"] == []
    scanned = {Path(c["file_path"]).name for c in report["results"]["passed_checks"]}
    assert {"storage.bicep", "function-app.bicep"} <= scanned
    assert report["summary"]["resource_count"] > 0


# ---------------------------------------------------------------------------
# 4. Settings parity: config.py, Bicep, local.settings.json.example, README
# ---------------------------------------------------------------------------

CODE_SETTINGS = set(config.SETTING_NAMES)


def test_allow_lists_name_real_settings() -> None:
    assert set(NOT_SET_BY_BICEP) <= CODE_SETTINGS
    assert set(NOT_IN_LOCAL_EXAMPLE) <= CODE_SETTINGS
    assert not set(HOST_ONLY) & CODE_SETTINGS
    assert not set(LOCAL_HOST_ONLY) & CODE_SETTINGS


def test_bicep_sets_every_setting_the_code_reads() -> None:
    missing = CODE_SETTINGS - set(NOT_SET_BY_BICEP) - set(bicep_app_settings())
    assert not missing, f"read by shared/config.py, not set by infra/: {sorted(missing)}"


def test_bicep_sets_nothing_the_code_does_not_read() -> None:
    extra = set(bicep_app_settings()) - CODE_SETTINGS - set(HOST_ONLY)
    assert not extra, f"set by infra/, read by nobody: {sorted(extra)}"
    assert not set(bicep_app_settings()) & set(NOT_SET_BY_BICEP)


def local_example_values() -> dict[str, Any]:
    path = REPO / "local.settings.json.example"
    if not path.exists():
        pytest.fail("local.settings.json.example is missing at the repository root")
    values: dict[str, Any] = json.loads(path.read_text())["Values"]
    return values


def test_local_example_lists_every_setting_the_code_reads() -> None:
    missing = CODE_SETTINGS - set(NOT_IN_LOCAL_EXAMPLE) - set(local_example_values())
    assert not missing, f"missing from local.settings.json.example: {sorted(missing)}"


def test_local_example_lists_nothing_unknown() -> None:
    extra = set(local_example_values()) - CODE_SETTINGS - set(LOCAL_HOST_ONLY) - set(HOST_ONLY)
    assert not extra, f"in local.settings.json.example, read by nobody: {sorted(extra)}"


def readme_setting_names() -> set[str]:
    """Backticked names in the first column of the tables under the Configuration heading."""
    path = REPO / "README.md"
    if not path.exists():
        pytest.fail("README.md is missing")
    names: set[str] = set()
    section_level: int | None = None
    for line in path.read_text().splitlines():
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            level = len(heading.group(1))
            if section_level is not None and level <= section_level:
                break
            if section_level is None and "configuration" in heading.group(2).lower():
                section_level = level
            continue
        if section_level is None or not line.lstrip().startswith("|"):
            continue
        first_cell = line.strip().strip("|").split("|")[0]
        names.update(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", first_cell))
    if section_level is None:
        pytest.fail("README.md has no heading containing 'Configuration'")
    return names


def test_readme_documents_every_setting_the_code_reads() -> None:
    missing = CODE_SETTINGS - readme_setting_names()
    assert not missing, f"missing from the README configuration table: {sorted(missing)}"


def test_readme_documents_nothing_unknown() -> None:
    extra = readme_setting_names() - CODE_SETTINGS - set(HOST_ONLY) - set(LOCAL_HOST_ONLY)
    assert not extra, f"in the README configuration table, read by nobody: {sorted(extra)}"


# ---------------------------------------------------------------------------
# 5. The web board: its SPA redirect URI and its sign-in settings
# ---------------------------------------------------------------------------


def test_board_redirect_uri_is_a_spa_redirect_of_the_application() -> None:
    """MSAL.js's authorization code flow with PKCE needs the single-page-application platform."""
    from shared import board

    tree = _entra()
    _, app = _application()
    assert app["spa"]["redirectUris"] == ["boardRedirectUri"]
    assert "boardRedirectUri" in tree["parameters"]
    assert "web" not in app, "a web redirect would allow the implicit/secret flows instead"
    main = main_tree()
    passed = module_call(main, "modules/entra-app.bicep")["params"]["boardRedirectUri"]
    uri = resolve(main, passed)
    assert uri == f"https://${{functionAppName}}.${{appServiceDomain}}{board.BOARD_PATH}"
    assert resolve(main, "appServiceDomain") == "azurewebsites.net"
    assert main["outputs"]["boardUrl"]["value"] == "boardRedirectUri"


def test_board_settings_come_from_the_application() -> None:
    main = main_tree()
    entra = module_symbol(main, "modules/entra-app.bicep")
    settings = bicep_app_settings()
    params = module_call(main, "modules/function-app.bicep")["params"]
    assert dotted(params[settings["BOARD_CLIENT_ID"]]) == f"{entra}.outputs.clientId"
    assert params[settings["BOARD_API_SCOPE"]] == (
        f"${{{entra}.outputs.applicationIdUri}}/${{{entra}.outputs.workItemsScope}}"
    )

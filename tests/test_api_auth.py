"""Who may call the work item API, end to end through the harness with minted tokens.

The role matrix for every endpoint (no role, WorkItems.Read, WorkItems.ReadWrite, the
ingest role), for application and user (delegated) tokens, and the other direction: the
API roles grant nothing on POST /api/alerts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests import alert_factory as af
from tests.api_support import INGEST, NONE, READ, USER_OID, USER_UPN, WRITE, Api, api_session
from tests.harness import FunctionsHost
from tests.tokens import AZNS_APP_ID, CLIENT_ID, OTHER_APP_ID, Mint, bearer

ROLES = (NONE, READ, WRITE, INGEST)


@pytest.fixture
def api(host: FunctionsHost, mint: Mint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from api_session(host, mint, monkeypatch)


@pytest.fixture
def item_id(api: Api) -> str:
    [item] = api.alerts(af.fired("auth-1"))
    return item


def _endpoints(item_id: str, ci_id: str) -> list[tuple[str, str, bool]]:
    """(method, path, writes) for every endpoint of the API."""
    return [
        ("GET", "/api/workitems", False),
        ("GET", f"/api/workitems/{item_id}", False),
        ("PATCH", f"/api/workitems/{item_id}", True),
        ("GET", "/api/cis", False),
        ("GET", f"/api/cis/{ci_id}", False),
    ]


def _expected(role: str, writes: bool) -> int:
    if role in (NONE, INGEST):
        return 403
    if writes and role == READ:
        return 403
    return 200


@pytest.mark.parametrize("user", [False, True], ids=["application", "user"])
def test_role_matrix(api: Api, item_id: str, user: bool) -> None:
    ci_id = api.item(item_id).body["configurationItems"][0]["id"]
    for method, path, writes in _endpoints(item_id, ci_id):
        for role in ROLES:
            headers = {}
            body = None
            if method == "PATCH":
                headers["If-Match"] = "*"
                body = {"note": f"checked by {role}"}
            answer = api.call(method, path, role=role, user=user, headers=headers, body=body)
            expected = _expected(role, writes)
            assert answer.status == expected, (method, path, role, user, answer)
            if expected == 403:
                assert answer.body["error"] == "missing_role"
                assert "insufficient_scope" in answer.headers["WWW-Authenticate"]


def test_no_token_and_bad_tokens(api: Api, item_id: str) -> None:
    for method, path, _ in _endpoints(item_id, "CI-0123456789ABCDEFGHJK"):
        answer = api.call(method, path, token="", body={"note": "x"} if method == "PATCH" else None)
        assert answer.status == 401
        assert answer.body["error"] == "missing_token"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    wrong_audience = api.token(WRITE, audience="api://someone-else")
    assert api.get("/api/workitems", token=wrong_audience).status == 401
    expired = api.token(WRITE, now=1_000_000_000)
    assert api.get("/api/workitems", token=expired).body["error"] == "token_expired"


def test_both_token_versions_and_audiences(api: Api) -> None:
    v1 = api.token(READ, version="1.0")  # aud: the Application ID URI
    assert api.get("/api/workitems", token=v1).status == 200
    v1_client_id = api.token(READ, version="1.0", audience=CLIENT_ID)
    assert api.get("/api/workitems", token=v1_client_id).status == 200
    v1_user = api.token(READ, version="1.0", user=True)
    assert api.get("/api/workitems", token=v1_user).status == 200


def test_any_caller_app_is_allowed(api: Api) -> None:
    for app in (OTHER_APP_ID, AZNS_APP_ID, "0f0e0d0c-0b0a-4908-8706-050403020100"):
        assert api.get("/api/workitems", token=api.token(READ, app_id=app)).status == 200


def test_user_tokens_need_the_scope_and_the_role(api: Api) -> None:
    no_scope = api.token(READ, user=True, scp="openid profile")
    answer = api.get("/api/workitems", token=no_scope)
    assert answer.status == 403
    assert answer.body["error"] == "missing_scope"
    assert answer.body["required_scopes"] == ["user_impersonation"]
    with_other_scopes = api.token(READ, user=True, scp="openid user_impersonation profile")
    assert api.get("/api/workitems", token=with_other_scopes).status == 200
    scope_no_role = api.token(NONE, user=True)
    answer = api.get("/api/workitems", token=scope_no_role)
    assert answer.status == 403
    assert answer.body["error"] == "missing_role"
    assert sorted(answer.body["required_roles"]) == [READ, WRITE]
    # The webhook's setting has nothing to do with it; the answer says who grants the role.
    assert "AAD_REQUIRED_ROLE" not in answer.body["detail"]
    assert "app role of this API" in answer.body["detail"]


def test_write_needs_read_write(api: Api, item_id: str) -> None:
    answer = api.patch(item_id, {"note": "hi"}, "*", role=READ)
    assert answer.status == 403
    assert answer.body["required_roles"] == [WRITE]
    answer = api.patch(item_id, {"note": "hi"}, "*", role=READ, user=True)
    assert answer.status == 403
    assert api.patch(item_id, {"note": "hi"}, "*", role=WRITE, user=True).status == 200


def test_a_refused_request_changes_nothing(api: Api, item_id: str) -> None:
    before = api.item(item_id).body
    for role in (NONE, READ, INGEST):
        api.patch(item_id, {"state": "Closed"}, "*", role=role)
    after = api.item(item_id).body
    assert after["state"] == before["state"] == "New"
    assert after["history"] == before["history"]


# -- the other direction: the ingest endpoint refuses the API's roles ----------------------


def _post_alert(api: Api, token: str) -> tuple[int, dict[str, object]]:
    from tests.alert_samples import load_bytes

    response = api.host.request(
        "POST",
        "/api/alerts",
        headers={"Authorization": bearer(token), "Content-Type": "application/json"},
        body=load_bytes("metric-alert-static-fired"),
    )
    return response.status_code, json.loads(response.get_body())


@pytest.mark.parametrize("role", [READ, WRITE])
def test_api_roles_grant_nothing_on_ingest(api: Api, role: str) -> None:
    # The Azure Monitor caller itself, but holding an API role instead of the webhook role.
    status, body = _post_alert(api, api.mint("1.0", roles=[role]))
    assert (status, body["error"]) == (403, "missing_role")
    # Any other app with the API role.
    status, body = _post_alert(api, api.token(role, version="1.0"))
    assert (status, body["error"]) == (403, "caller_app_not_allowed")
    # A user with the API role and the scope.
    status, body = _post_alert(api, api.token(role, version="1.0", user=True))
    assert (status, body["error"]) == (403, "delegated_token_not_allowed")
    # Even a user who also holds the webhook role.
    user_with_webhook_role = api.token(INGEST, version="1.0", user=True)
    status, body = _post_alert(api, user_with_webhook_role)
    assert status == 403
    # The real thing still works.
    status, body = _post_alert(api, api.mint("1.0"))
    assert status == 202, body


def test_the_history_names_who_changed_an_item(api: Api, item_id: str) -> None:
    etag = api.item(item_id).etag
    answer = api.patch(item_id, {"state": "Acknowledged", "note": "mine"}, etag, user=True)
    assert answer.status == 200, answer
    manual = [h for h in answer.body["history"] if h["source"] == "manual"]
    assert len(manual) == 1
    entry = manual[0]
    assert entry["actor"] == {
        "type": "user",
        "oid": USER_OID,
        "name": USER_UPN,
        "appId": OTHER_APP_ID,
    }
    assert entry["note"] == "mine"
    assert entry["time"]
    assert any(USER_UPN in c for c in entry["changes"])
    answer = api.patch(item_id, {"state": "InProgress"}, answer.etag, role=WRITE)
    app_entry = [h for h in answer.body["history"] if h["source"] == "manual"][-1]
    assert app_entry["actor"]["type"] == "application"
    assert app_entry["actor"]["name"] == OTHER_APP_ID
    assert app_entry["actor"]["oid"]
    assert answer.body["manual"]["by"] == f"app {OTHER_APP_ID}"

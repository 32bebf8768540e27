"""The ARM client against a local Alerts Management that keeps the specification's contract.

Tokens come from the real ManagedIdentityCredential, through App Service's managed identity
protocol served on 127.0.0.1 (tests/arm_server.py), signed with a real RSA key; the server
refuses any token not of that identity, not for its audience or not signed by that key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.identity import ManagedIdentityCredential

from shared import azure_alerts
from shared.azure_alerts import AlertsClient, TransientArmError
from shared.config import ConfigError, load_settings
from tests.arm_server import IDENTITY_CLIENT_ID, IDENTITY_HEADER, ArmServer, Fault, alert_id
from tests.tokens import SigningKey

BASE_ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "AAD_TENANT_IDS": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "AAD_AUDIENCES": "api://example",
}


@pytest.fixture(scope="module")
def arm_server() -> Iterator[ArmServer]:
    server = ArmServer(SigningKey.generate(kid="msi-key")).start()
    yield server
    server.stop()


@pytest.fixture
def arm(arm_server: ArmServer, monkeypatch: pytest.MonkeyPatch) -> ArmServer:
    arm_server.reset()
    monkeypatch.setenv("IDENTITY_ENDPOINT", arm_server.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    return arm_server


def client_for(arm: ArmServer, **options: Any) -> AlertsClient:
    credential = ManagedIdentityCredential(client_id=IDENTITY_CLIENT_ID)
    return AlertsClient(arm.base_url, credential, backoff=options.pop("backoff", 0.05), **options)


ALERT = alert_id(1)


def test_change_state_follows_the_contract(arm: ArmServer) -> None:
    arm.add_alert(ALERT)
    outcome = client_for(arm).change_state(ALERT, "Acknowledged", "Acknowledged by alice")
    assert outcome.result == azure_alerts.CHANGED
    assert arm.state(ALERT) == "Acknowledged"
    assert arm.changes(ALERT) == [("Acknowledged", "Acknowledged by alice")]
    assert [(c.method, c.status) for c in arm.calls] == [("GET", 200), ("POST", 200)]
    # The token came from the managed identity endpoint, for this cloud's ARM audience, of
    # the configured (user-assigned) identity.
    (token_request,) = arm.token_requests
    assert token_request["resource"] == arm.base_url
    assert token_request["client_id"] == IDENTITY_CLIENT_ID


def test_a_state_the_alert_already_has_is_not_set_again(arm: ArmServer) -> None:
    arm.add_alert(ALERT, state="Closed")
    outcome = client_for(arm).change_state(ALERT, "Closed", "closed")
    assert outcome.result == azure_alerts.UNCHANGED
    assert arm.posts() == []


def test_every_state_and_a_reopen(arm: ArmServer) -> None:
    arm.add_alert(ALERT)
    client = client_for(arm)
    for state in ("Acknowledged", "Closed", "New"):
        assert client.change_state(ALERT, state, f"to {state}").succeeded
    assert [s for s, _ in arm.changes(ALERT)] == ["Acknowledged", "Closed", "New"]


class _FixedToken:
    """A credential handing out one given token (to show what the server refuses)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


def test_tokens_of_another_audience_key_or_identity_are_refused(arm: ArmServer) -> None:
    arm.add_alert(ALERT)
    identity = ManagedIdentityCredential(client_id=IDENTITY_CLIENT_ID)
    other_audience = identity.get_token("https://management.azure.com/.default").token
    other_key = SigningKey.generate().sign(
        {**_claims_of(arm), "aud": arm.base_url}, kid=arm.key.kid
    )
    for token in (other_audience, other_key):
        client = AlertsClient(arm.base_url, _FixedToken(token), backoff=0.01)
        outcome = client.change_state(ALERT, "Closed", "x")
        assert outcome.result == azure_alerts.UNAUTHORIZED
        assert "rejected the app's token" in outcome.reason
    assert arm.state(ALERT) == "New"


def _claims_of(arm: ArmServer) -> dict[str, Any]:
    import jwt

    token, _ = arm.mint(arm.base_url)
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def test_429_is_retried_after_retry_after(arm: ArmServer) -> None:
    arm.add_alert(ALERT)
    arm.fail_next(ALERT, Fault(429, {"Retry-After": "1"}, code="TooManyRequests"))
    started = time.monotonic()
    outcome = client_for(arm).change_state(ALERT, "Closed", "closed")
    assert outcome.result == azure_alerts.CHANGED
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in arm.posts()] == [429, 200]


def test_a_long_retry_after_ends_the_attempt(arm: ArmServer) -> None:
    arm.add_alert(ALERT)
    arm.fail_next(ALERT, Fault(429, {"Retry-After": "3600"}, code="TooManyRequests"))
    started = time.monotonic()
    with pytest.raises(TransientArmError) as raised:
        client_for(arm).change_state(ALERT, "Closed", "closed")
    assert raised.value.retry_after == 3600
    assert time.monotonic() - started < 5
    assert arm.state(ALERT) == "New"


def test_5xx_is_retried_a_bounded_number_of_times(arm: ArmServer) -> None:
    arm.add_alert(ALERT)
    arm.fail_next(ALERT, Fault(500), Fault(503, code="ServiceUnavailable"))
    assert client_for(arm).change_state(ALERT, "Closed", "c").result == azure_alerts.CHANGED
    assert [c.status for c in arm.posts()] == [500, 503, 200]
    arm.reset()
    arm.add_alert(ALERT)
    arm.fail_next(ALERT, *[Fault(500)] * 10)
    with pytest.raises(TransientArmError):
        client_for(arm).change_state(ALERT, "Closed", "c")
    assert len(arm.posts()) == 4  # the first try and three retries


def test_timeouts_are_retried_and_bounded(arm: ArmServer) -> None:
    arm.add_alert(ALERT)
    # The first POST lands after the client gave up: the retry sets the same state again.
    arm.fail_next(ALERT, Fault(None, delay=1.0))
    client = client_for(arm, read_timeout=0.3)
    assert client.change_state(ALERT, "Acknowledged", "a").succeeded
    assert arm.changes(ALERT) == [("Acknowledged", "a")]
    arm.fail_next(ALERT, *[Fault(None, delay=1.0)] * 4, method="GET")
    started = time.monotonic()
    with pytest.raises(TransientArmError, match="Timeout"):
        client.change_state(ALERT, "Closed", "c")
    assert time.monotonic() - started < 10


def test_404_and_403_end_the_attempt_with_a_reason(arm: ArmServer) -> None:
    gone, denied = alert_id(404), alert_id(403)
    arm.add_alert(denied)
    arm.forbidden.add(denied.lower())
    client = client_for(arm)
    outcome = client.change_state(gone, "Closed", "c")
    assert outcome.result == azure_alerts.NOT_FOUND
    assert "no longer exists" in outcome.reason
    outcome = client.change_state(denied, "Acknowledged", "c")
    assert outcome.result == azure_alerts.FORBIDDEN
    assert "could not set the Azure alert to Acknowledged" in outcome.reason
    assert "lacks permission" in outcome.reason
    assert "AuthorizationFailed" in outcome.reason
    assert len(arm.posts(denied)) == 1  # not retried
    assert len([c for c in arm.calls if c.alert_id == gone]) == 1


def test_values_that_are_not_alert_ids_never_reach_arm(arm: ArmServer) -> None:
    client = client_for(arm)
    for value in (ALERT + "?api-version=2015-01-01", ALERT + "/../../x", "/providers/x"):
        assert client.change_state(value, "Closed", "c").result == azure_alerts.REJECTED
    assert client.change_state(ALERT, "Resolved", "c").result == azure_alerts.REJECTED
    assert arm.calls == []


def test_logs_never_hold_the_token(arm: ArmServer, caplog: pytest.LogCaptureFixture) -> None:
    arm.add_alert(ALERT)
    caplog.set_level(logging.DEBUG)
    client = client_for(arm)
    client.change_state(ALERT, "Acknowledged", "a")
    arm.forbidden.add(ALERT.lower())
    client.change_state(ALERT, "Closed", "c")
    token = ManagedIdentityCredential(client_id=IDENTITY_CLIENT_ID).get_token(
        azure_alerts.audience_scope(arm.base_url)
    )
    assert caplog.records
    signature = token.token.rsplit(".", 1)[-1]
    assert signature not in caplog.text
    assert IDENTITY_HEADER not in caplog.text
    assert "-> Closed: forbidden" in caplog.text


def test_arm_endpoint_is_derived_from_the_cloud() -> None:
    clouds = {
        "https://login.microsoftonline.com": "https://management.azure.com",
        "https://login.microsoftonline.us": "https://management.usgovcloudapi.net",
        "https://login.chinacloudapi.cn": "https://management.chinacloudapi.cn",
    }
    for authority, arm_endpoint in clouds.items():
        settings = load_settings({**BASE_ENV, "AAD_AUTHORITY_HOST": authority})
        assert settings.alert_sync.arm_endpoint == arm_endpoint
        assert settings.alert_sync.enabled
    unknown = load_settings({**BASE_ENV, "AAD_AUTHORITY_HOST": "https://login.example"})
    assert unknown.alert_sync.arm_endpoint is None
    explicit = load_settings({**BASE_ENV, "ARM_ENDPOINT": "https://management.example/"})
    assert explicit.alert_sync.arm_endpoint == "https://management.example"
    assert azure_alerts.audience_scope("https://management.azure.com") == (
        "https://management.azure.com/.default"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ARM_ENDPOINT", "http://management.azure.com"),
        ("ARM_ENDPOINT", "https://management.azure.com/subscriptions"),
        ("ARM_ENDPOINT", "https://user:pw@management.azure.com"),
        ("ARM_ENDPOINT", "management.azure.com"),
        ("SYNC_ALERT_STATE", "yes"),
    ],
)
def test_bad_sync_settings_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**BASE_ENV, name: value})
    assert raised.value.setting == name
    assert not load_settings({**BASE_ENV, "SYNC_ALERT_STATE": "FALSE"}).alert_sync.enabled

"""More than a thousand hostile requests, and not one gets in, breaks anything or stalls.

The corpus is hostile by construction: every request carries at least one defect that no
correct receiver may accept (a token that cannot verify, a body that is not a common-schema
alert, a body over the size limit), so every one must answer 4xx with a JSON error. Parts:

- tokens: a fixed list of every kind of bad Authorization header (absent, malformed,
  duplicated, oversized, wrong algorithm, forged, re-signed with wrong claims, wrong key),
  then Hypothesis mutations of valid tokens: claims made invalid and re-signed, characters
  of the compact form changed, inserted or removed;
- bodies (with a valid token): not JSON, invalid UTF-8, 10,000 levels of nesting, huge
  numbers, long strings, a 10 MB body, other schemas, and Hypothesis mutations of the
  published samples (samples/) with a defect that makes them no alert;
- headers: Hypothesis junk headers, duplicate and oversized headers, lying Content-Length,
  unexpected Content-Types, on top of a bad token or a bad body.

For each request: a 4xx status, a JSON body with an `error`, no 5xx (the harness answers
500 for an unhandled exception), nothing queued and no claim-check blob. Separately, time
per request grows linearly with the size of the input: the CPU time at ~1 MB is compared
with the CPU time at ~100 KB for each kind of large input (a quadratic path would be 100x).

Targets: the corpus runs against every entry of TARGETS. EXTENSION POINT: the work item
API adds its routes there.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.alerts.payload import COMMON_SCHEMA_ID
from tests.alert_samples import all_payloads, load_bytes
from tests.fault_injection import claim_check_blobs, queue_length
from tests.harness import FunctionsHost
from tests.tokens import (
    AUDIENCE_URI,
    AZNS_APP_ID,
    CLIENT_ID,
    DELETE,
    OTHER_APP_ID,
    OTHER_TENANT,
    ROLE,
    TENANT_A,
    TENANT_B,
    SigningKey,
    b64url,
    b64url_json,
    bearer,
    delegated,
    forge_es256,
    forge_header,
    forge_hs256,
    forge_none,
    v1_claims,
    v1_issuer,
    v2_claims,
    v2_issuer,
)

# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """An endpoint the corpus attacks.

    `claims(version)` gives the claims of a token the endpoint accepts (the corpus breaks
    them); `body` is a body it accepts, or None for endpoints without one. `takes_alerts`:
    the body must be a common-schema alert, so the alert body cases apply (a valid token
    with a broken alert must be refused). Other endpoints get the token and header cases;
    body cases of their own belong next to the alert ones.
    """

    name: str
    method: str
    path: str
    claims: Callable[[str], dict[str, Any]]
    body: bytes | None
    takes_alerts: bool
    roles: tuple[str, ...]  # app roles the endpoint accepts (a token without them fails)
    any_caller_app: bool = False  # True: any appid/azp is accepted, so changing it breaks nothing


def _ingest_claims(version: str) -> dict[str, Any]:
    return v1_claims() if version == "1.0" else v2_claims()


def _api_claims(version: str, role: str) -> dict[str, Any]:
    return v1_claims(roles=[role]) if version == "1.0" else v2_claims(roles=[role])


TARGETS: list[Target] = [
    Target(
        name="ingest",
        method="POST",
        path="/api/alerts",
        claims=_ingest_claims,
        body=load_bytes("metric-alert-static-fired"),
        takes_alerts=True,
        roles=(ROLE,),
    ),
    # The work item API: token and header cases (its bodies have their own tests in
    # tests/test_api_params.py). Any client app may call it, with the API's roles.
    Target(
        name="list work items",
        method="GET",
        path="/api/workitems?state=all&top=5",
        claims=lambda version: _api_claims(version, "WorkItems.Read"),
        body=None,
        takes_alerts=False,
        roles=("WorkItems.Read", "WorkItems.ReadWrite"),
        any_caller_app=True,
    ),
    Target(
        name="search CIs",
        method="GET",
        path="/api/cis?query=vm",
        claims=lambda version: _api_claims(version, "WorkItems.ReadWrite"),
        body=None,
        takes_alerts=False,
        roles=("WorkItems.Read", "WorkItems.ReadWrite"),
        any_caller_app=True,
    ),
]
BODY_TARGETS = [t for t in TARGETS if t.takes_alerts]

# ----------------------------------------------------------------------------- bookkeeping

# Requests sent per part of the corpus; the last test checks the total.
SENT: Counter[str] = Counter()
MIN_CORPUS = 1000
PER_REQUEST_CEILING_S = 5.0  # only a catastrophic path comes near; the ratios test the rest
RATIO_CEILING = 50.0  # linear: ~10-25x for 10x the input (caches, allocator); quadratic: 100x


@dataclass
class Case:
    label: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    expect: tuple[int, ...] = ()  # specific statuses when known (any 4xx otherwise)


@dataclass
class Receiver:
    host: FunctionsHost
    storage: str
    signing_key: SigningKey
    other_key: SigningKey
    seen: Counter[int] = field(default_factory=Counter)
    _bad: dict[str, list[Case]] = field(default_factory=dict)
    _valid: dict[tuple[str, str], str] = field(default_factory=dict)

    def valid_token(self, target: Target, version: str = "1.0") -> str:
        """One valid token per target and version for the whole test: Hypothesis replays
        examples, and a strategy built on a fresh token would differ between replays."""
        key = (target.name, version)
        if key not in self._valid:
            self._valid[key] = self.token(target, version)
        return self._valid[key]

    def bad_tokens(self, target: Target) -> list[Case]:
        """bad_authorizations(), made once per target (they cost ~100 RSA signatures)."""
        if target.name not in self._bad:
            self._bad[target.name] = bad_authorizations(self, target)
        return self._bad[target.name]

    def token(self, target: Target, version: str = "1.0", **changes: Any) -> str:
        claims = {**target.claims(version), **changes}
        claims = {k: v for k, v in claims.items() if v is not DELETE}
        return self.signing_key.sign(claims)

    def send(self, target: Target, case: Case, part: str) -> func.HttpResponse:
        start = time.perf_counter()
        response = self.host.request(
            target.method, target.path, headers=case.headers, body=case.body
        )
        elapsed = time.perf_counter() - start
        SENT[part] += 1
        self.seen[response.status_code] += 1
        where = f"{target.name} / {case.label}"
        status = response.status_code
        assert 400 <= status < 500, f"{where}: answered {status}: {response.get_body()[:300]!r}"
        if case.expect:
            assert status in case.expect, f"{where}: {status}, expected {case.expect}"
        assert (response.mimetype or "").startswith("application/json"), where
        answer = json.loads(response.get_body())
        assert isinstance(answer.get("error"), str), f"{where}: {answer}"
        assert answer["error"], f"{where}: {answer}"
        assert elapsed < PER_REQUEST_CEILING_S, f"{where}: took {elapsed:.1f} s"
        return response

    def assert_nothing_stored(self) -> None:
        assert queue_length(self.storage) == 0, "a hostile request was queued"
        assert claim_check_blobs(self.storage) == [], "a hostile request left a claim-check blob"


@pytest.fixture
def receiver(
    host: FunctionsHost,
    storage: str,
    signing_key: SigningKey,
    other_signing_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Receiver]:
    caplog.set_level(logging.WARNING)
    r = Receiver(host, storage, signing_key, other_signing_key)
    r.assert_nothing_stored()
    # Sanity: the valid form of every target is accepted, so the corpus tests its defects.
    for target in TARGETS:
        response = host.request(
            target.method,
            target.path,
            headers={"Authorization": bearer(r.token(target)), "Content-Type": "application/json"},
            body=target.body,
        )
        assert 200 <= response.status_code < 300, response.get_body()
    _drain_valid(storage)
    yield r
    r.assert_nothing_stored()
    crashes = [
        rec for rec in caplog.records if rec.name == "harness" and rec.levelno >= logging.ERROR
    ]
    assert not crashes, crashes[0].getMessage()


def _drain_valid(storage: str) -> None:
    """Remove what the sanity requests queued (and their blobs, if any)."""
    QueueClient.from_connection_string(storage, "alerts").clear_messages()
    blobs = BlobServiceClient.from_connection_string(storage)
    for container in blobs.list_containers():
        blobs.delete_container(container.name)


_HYPOTHESIS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def examples(n: int) -> settings:
    return settings(_HYPOTHESIS, max_examples=n)


# ----------------------------------------------------------------------------- tokens


def _flip(token: str, index: int) -> str:
    """`token` with the character at `index` replaced by another base64url character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    current = token[index]
    replacement = alphabet[(alphabet.index(current) + 17) % 64] if current in alphabet else "A"
    return token[:index] + replacement + token[index + 1 :]


def bad_authorizations(r: Receiver, target: Target) -> list[Case]:
    """Every kind of bad Authorization header, each one unacceptable by construction."""
    valid = r.token(target)
    v2 = r.token(target, "2.0")
    header, payload, signature = valid.split(".")
    claims = target.claims("1.0")
    key_pem = r.signing_key.public_pem()
    kid = r.signing_key.kid
    other = r.other_key
    nan_payload = b64url(b'{"exp": NaN}')
    latin_payload = b64url(b'{"a": "\xff"}')
    cases: list[tuple[str, list[tuple[str, str]] | str | None]] = [
        ("no Authorization header", None),
        ("empty", ""),
        ("spaces only", "   "),
        ("scheme only", "Bearer"),
        ("scheme and space", "Bearer "),
        ("Basic", "Basic " + base64.b64encode(b"user:password").decode()),
        ("Negotiate", f"Negotiate {valid}"),
        ("token without scheme", valid),
        ("scheme with colon", f"Bearer: {valid}"),
        ("scheme glued", f"Bearer{valid}"),
        ("tab after scheme", f"Bearer\t{valid}"),
        ("two tokens", f"Bearer {valid} {valid}"),
        ("token then junk", f"Bearer {valid} x"),
        ("CRLF injection", f"Bearer {valid}\r\nX-Injected: 1"),
        ("NUL inside", f"Bearer {valid[:40]}\x00{valid[40:]}"),
        ("non-ASCII inside", f"Bearer {valid[:40]}é{valid[40:]}"),
        ("emoji token", "Bearer 🔑.🔑.🔑"),
        ("two valid headers", [("Authorization", bearer(valid)), ("Authorization", bearer(v2))]),
        ("valid and bad header", [("Authorization", bearer(valid)), ("Authorization", "Bearer x")]),
        ("comma-joined", f"Bearer {valid}, Bearer {v2}"),
        ("16 KiB + 1", "Bearer " + "a" * (16 * 1024 - 6)),
        ("1 MB", "Bearer " + valid + "." + "A" * 1_000_000),
        ("two segments", f"Bearer {header}.{payload}"),
        ("four segments", f"Bearer {valid}.{signature}"),
        ("empty segments", "Bearer .."),
        ("empty signature", f"Bearer {header}.{payload}."),
        ("padded segments", f"Bearer {header}==.{payload}.{signature}"),
        ("standard base64", f"Bearer {header}.{payload}.{signature.replace('-', '+')}+/"),
        ("header not JSON", f"Bearer {b64url(b'not json')}.{payload}.{signature}"),
        ("header a list", f"Bearer {b64url_json(['RS256'])}.{payload}.{signature}"),
        ("payload not JSON", f"Bearer {header}.{b64url(b'{oops')}.{signature}"),
        ("payload a list", f"Bearer {header}.{b64url_json([claims])}.{signature}"),
        ("payload with NaN", f"Bearer {header}.{nan_payload}.{signature}"),
        ("payload invalid UTF-8", f"Bearer {header}.{latin_payload}.{signature}"),
        ("signature truncated", f"Bearer {valid[:-20]}"),
        ("signature flipped", "Bearer " + _flip(valid, len(valid) - 40)),
        ("payload flipped", "Bearer " + _flip(valid, len(header) + 10)),
        ("header flipped", "Bearer " + _flip(valid, 5)),
        ("signature of another token", f"Bearer {header}.{payload}.{v2.split('.')[2]}"),
        ("alg none", bearer(forge_none(claims, kid))),
        ("alg none, signature kept", bearer(forge_none(claims, kid) + signature)),
        ("HS256 with our public key", bearer(forge_hs256(claims, key_pem, kid))),
        ("ES256", bearer(forge_es256(claims, kid))),
        ("RS512", bearer(r.signing_key.sign(claims, algorithm="RS512"))),
        ("PS256", bearer(r.signing_key.sign(claims, algorithm="PS256"))),
        ("alg missing", bearer(forge_header(claims, {"typ": "JWT", "kid": kid}))),
        ("alg rs256", bearer(forge_header(claims, {"alg": "rs256", "kid": kid}))),
        ("crit header", bearer(r.signing_key.sign(claims, headers={"crit": ["exp"]}))),
        ("kid missing", bearer(r.signing_key.sign(claims, kid=DELETE))),
        ("kid unknown", bearer(r.signing_key.sign(claims, kid="no-such-key"))),
        ("kid a number", bearer(r.signing_key.sign(claims, headers={"kid": 7}))),
        (
            "jku to elsewhere, unknown kid",
            bearer(r.signing_key.sign(claims, kid="x", headers={"jku": "http://127.0.0.1:9/k"})),
        ),
        ("other key, unknown kid", bearer(other.sign(claims))),
        ("other key, our kid", bearer(other.sign(claims, kid=kid))),
    ]
    resigned: list[tuple[str, dict[str, Any]]] = [
        ("iss other tenant", {"iss": v1_issuer(OTHER_TENANT), "tid": OTHER_TENANT}),
        ("iss v2 form with v1 ver", {"iss": v2_issuer(TENANT_A)}),
        ("iss trailing junk", {"iss": v1_issuer(TENANT_A) + "x"}),
        ("iss missing", {"iss": DELETE}),
        ("iss a number", {"iss": 1}),
        ("tid mismatch", {"tid": TENANT_B}),
        ("tid missing", {"tid": DELETE}),
        ("aud other", {"aud": "api://someone-else"}),
        ("aud Graph", {"aud": "https://graph.microsoft.com"}),
        ("aud missing", {"aud": DELETE}),
        ("aud list of others", {"aud": ["api://a", "api://b"]}),
        ("aud prefix of ours", {"aud": AUDIENCE_URI[:-1]}),
        ("exp past", {"exp": int(time.time()) - 3600}),
        ("exp missing", {"exp": DELETE}),
        ("exp string", {"exp": "never"}),
        ("exp true", {"exp": True}),
        ("exp null", {"exp": None}),
        ("nbf future", {"nbf": int(time.time()) + 3600}),
        ("nbf string", {"nbf": "now"}),
        ("iat future", {"iat": int(time.time()) + 3600}),
        ("iat missing", {"iat": DELETE}),
        ("appid missing", {"appid": DELETE}),
        ("appid a list", {"appid": [claims["appid"]]}),
        ("oid missing", {"oid": DELETE}),
        ("oid empty", {"oid": ""}),
        ("roles missing", {"roles": DELETE}),
        ("roles empty", {"roles": []}),
        ("roles other", {"roles": ["Reader"]}),
        ("roles a string", {"roles": ROLE}),
        ("roles with a number", {"roles": [ROLE, 1]}),
        ("ver 2.0 on a v1 issuer", {"ver": "2.0"}),
        ("scp a list", {"scp": ["x"]}),
    ]
    if not target.any_caller_app:
        resigned.append(("appid other", {"appid": OTHER_APP_ID}))
    for label, change in resigned:
        cases.append((f"re-signed: {label}", bearer(r.token(target, **change))))
    v2_claims_bad = [
        ("v2 azp missing", {"azp": DELETE}),
        ("v2 aud the URI of another app", {"aud": "api://other"}),
        ("v2 ver 1.0", {"ver": "1.0"}),
    ]
    if not target.any_caller_app:
        v2_claims_bad.append(("v2 azp other", {"azp": OTHER_APP_ID}))
    for label, change in v2_claims_bad:
        cases.append((f"re-signed: {label}", bearer(r.token(target, "2.0", **change))))
    cases.append(("delegated user token", bearer(r.signing_key.sign(delegated(claims)))))
    duplicate_aud = header + "." + b64url(json.dumps(claims)[:-1].encode() + b', "aud": "x"}')
    cases.append(("duplicate aud, last wrong", bearer(_sign_raw(r.signing_key, duplicate_aud))))
    out = []
    for label, value in cases:
        if value is None:
            headers: list[tuple[str, str]] = []
        elif isinstance(value, list):
            headers = list(value)
        else:
            headers = [("Authorization", value)]
        headers.append(("Content-Type", "application/json"))
        out.append(Case(label, headers, target.body or b"", expect=(401, 403)))
    return out


def _sign_raw(key: SigningKey, signing_input: str) -> str:
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_every_kind_of_bad_token_is_refused(receiver: Receiver, target: Target) -> None:
    cases = bad_authorizations(receiver, target)
    assert len(cases) > 90
    for case in cases:
        receiver.send(target, case, "tokens")
    receiver.assert_nothing_stored()


_OUR_AUDIENCES = (AUDIENCE_URI.lower(), CLIENT_ID.lower())
# Fixed once: strategies must be the same every time Hypothesis replays an example.
NOW = int(time.time())
_breakers: dict[str, dict[str, st.SearchStrategy[Any]]] = {}


def breakers(target: Target) -> dict[str, st.SearchStrategy[Any]]:
    """Claim changes that make a v1 token unacceptable to `target` whatever else it holds."""
    if target.name not in _breakers:
        _breakers[target.name] = _make_breakers(target)
    return _breakers[target.name]


def _make_breakers(target: Target) -> dict[str, st.SearchStrategy[Any]]:
    found: dict[str, st.SearchStrategy[Any]] = {
        "iss": st.sampled_from(
            [v1_issuer(OTHER_TENANT), v2_issuer(OTHER_TENANT), "https://evil.example/", "", 0]
        ),
        "aud": st.one_of(
            st.text(max_size=40).filter(lambda a: a.lower() not in _OUR_AUDIENCES),
            st.lists(st.text(max_size=10).filter(lambda a: a.lower() not in _OUR_AUDIENCES)),
        ),
        "exp": st.one_of(st.integers(-(2**40), NOW - 600), st.text(max_size=5), st.none()),
        "tid": st.sampled_from([TENANT_B, OTHER_TENANT, "", None, 5]),
        "roles": st.one_of(
            st.lists(
                st.text(max_size=30).filter(lambda r: r.lower() not in _lower(target.roles)),
                max_size=3,
            ),
            st.text(),
        ),
        "oid": st.sampled_from(["", None, 3, []]),
        # A day ahead, not minutes: NOW is taken at import, and a slow run must not catch up.
        "iat": st.one_of(st.integers(NOW + 86_400, 2**40), st.text(max_size=3)),
        "appid": st.one_of(st.none(), st.integers(), st.just("")),
    }
    if not target.any_caller_app:
        found["appid"] = st.one_of(
            found["appid"], st.uuids().map(str).filter(lambda u: u != AZNS_APP_ID)
        )
    return found


def _lower(values: tuple[str, ...]) -> set[str]:
    return {v.lower() for v in values}


HARMLESS = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(
        lambda k: (
            k
            not in {
                "iss",
                "aud",
                "exp",
                "nbf",
                "iat",
                "tid",
                "appid",
                "azp",
                "roles",
                "oid",
                "ver",
                "scp",
            }
        )
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=50),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=10,
    ),
    max_size=4,
)


@st.composite
def broken_claims(draw: st.DrawFn, target: Target) -> dict[str, Any]:
    strategies = breakers(target)
    names = draw(st.lists(st.sampled_from(sorted(strategies)), min_size=1, max_size=3, unique=True))
    changes = {name: draw(strategies[name]) for name in names}
    return {**draw(HARMLESS), **changes}


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@examples(200)
@given(data=st.data())
def test_valid_tokens_with_broken_claims_are_refused(
    receiver: Receiver, target: Target, data: st.DataObject
) -> None:
    changes = data.draw(broken_claims(target))
    claims = {**target.claims("1.0"), **changes}
    token = receiver.signing_key.sign(claims)
    case = Case(
        f"claims {sorted(changes)}",
        [("Authorization", bearer(token)), ("Content-Type", "application/json")],
        target.body or b"",
        expect=(401, 403),
    )
    receiver.send(target, case, "token claims")
    receiver.assert_nothing_stored()


@st.composite
def mangled_tokens(draw: st.DrawFn, valid: str) -> str:
    """A valid compact token with characters replaced, inserted or removed (never only the
    last character of the signature, whose low bits may be padding)."""
    token = valid
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(token) - 2))  # never the last character
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        char = draw(st.sampled_from(list("AZaz09-_.=+/ ~é\x00")))
        if action == "replace" and char != token[index]:
            token = token[:index] + char + token[index + 1 :]
        elif action == "insert":
            token = token[:index] + char + token[index:]
        else:
            token = token[:index] + token[index + 1 :]
    # A space put in front is still the same token: RFC 6750 allows "Bearer" 1*SP token.
    assume(token.lstrip(" ") != valid)
    return token


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@examples(200)
@given(data=st.data())
def test_mangled_valid_tokens_are_refused(
    receiver: Receiver, target: Target, data: st.DataObject
) -> None:
    valid = receiver.valid_token(target, data.draw(st.sampled_from(["1.0", "2.0"])))
    # Any change to header.payload breaks the signature over those characters; any change
    # to the signature but its last character (whose low bits may be padding) changes its
    # bytes. mangled_tokens never touches that last character.
    token = data.draw(mangled_tokens(valid))
    case = Case(
        "mangled token",
        [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")],
        target.body or b"",
        expect=(401, 403),
    )
    receiver.send(target, case, "mangled tokens")


# ----------------------------------------------------------------------------- bodies

SAMPLES = all_payloads()
COMMON = COMMON_SCHEMA_ID.encode()


def _nested(depth: int, open_: str = "[", close: str = "]", core: str = "1") -> bytes:
    return (open_ * depth + core + close * depth).encode()


def _sample(name: str = "metric-alert-static-fired") -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(SAMPLES[name])
    return payload


def _with_essentials(change: Callable[[dict[str, Any]], None]) -> bytes:
    payload = _sample()
    change(payload["data"]["essentials"])
    return json.dumps(payload).encode()


def _big_description_no_condition(size: int) -> bytes:
    def change(e: dict[str, Any]) -> None:
        e["description"] = "d" * size
        e["monitorCondition"] = "Exploded"

    return _with_essentials(change)


INVALID_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # encoded surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\x80",  # lone continuation
    b"\xe2\x82",  # truncated
]


def bad_bodies() -> list[Case]:
    """Bodies no receiver may accept, with the answer each deserves."""
    sample = SAMPLES["metric-alert-static-fired"]
    ten_mb = 10 * 1024 * 1024
    cases: list[tuple[str, bytes, tuple[int, ...]]] = [
        ("empty", b"", (400,)),
        ("whitespace", b" \n\t " * 100, (400,)),
        ("not JSON", b"{not json", (400,)),
        ("XML", b"<alert><id>1</id></alert>", (400,)),
        ("form data", b"alertId=1&monitorCondition=Fired", (400,)),
        ("truncated sample", sample[: len(sample) // 2], (400,)),
        ("sample twice", sample + sample, (400,)),
        ("trailing garbage", sample + b"garbage", (400,)),
        ("JSON null", b"null", (400,)),
        ("JSON number", b"42", (400,)),
        ("JSON string", b'"azureMonitorCommonAlertSchema"', (400,)),
        ("JSON array of the sample", b"[" + sample + b"]", (400,)),
        ("empty object", b"{}", (400,)),
        ("noncommon schema", load_bytes("noncommon-metric-alert-static"), (400,)),
        ("schemaId other", sample.replace(COMMON, b"AzureMonitorMetricAlert"), (400,)),
        ("schemaId a number", json.dumps({"schemaId": 1, "data": {}}).encode(), (400,)),
        ("data a list", json.dumps({"schemaId": COMMON_SCHEMA_ID, "data": []}).encode(), (400,)),
        ("data missing", json.dumps({"schemaId": COMMON_SCHEMA_ID}).encode(), (400,)),
        (
            "essentials a string",
            json.dumps({"schemaId": COMMON_SCHEMA_ID, "data": {"essentials": "x"}}).encode(),
            (400,),
        ),
        ("alertId missing", _with_essentials(lambda e: e.pop("alertId")), (400,)),
        ("alertId empty", _with_essentials(lambda e: e.update(alertId="")), (400,)),
        ("alertId spaces", _with_essentials(lambda e: e.update(alertId="   ")), (400,)),
        ("alertId a number", _with_essentials(lambda e: e.update(alertId=1e308)), (400,)),
        ("alertId an object", _with_essentials(lambda e: e.update(alertId={"a": 1})), (400,)),
        ("alertId 2 KB", _with_essentials(lambda e: e.update(alertId="a" * 2048)), (400,)),
        ("alertId surrogate", _with_essentials(lambda e: e.update(alertId="a\ud800")), (400,)),
        ("condition missing", _with_essentials(lambda e: e.pop("monitorCondition")), (400,)),
        (
            "condition other",
            _with_essentials(lambda e: e.update(monitorCondition="Firing")),
            (400,),
        ),
        (
            "condition a list",
            _with_essentials(lambda e: e.update(monitorCondition=["Fired"])),
            (400,),
        ),
        (
            "condition long",
            _with_essentials(lambda e: e.update(monitorCondition="Fired" * 99)),
            (400,),
        ),
        ("nested 10,000 arrays", _nested(10_000), (400,)),
        ("nested 10,000 objects", _nested(10_000, '{"a":', "}", "1"), (400,)),
        (
            "nested 10,000 in customProperties",
            sample.replace(b'"customProperties": null', b'"customProperties": ' + _nested(10_000))
            if b'"customProperties": null' in sample
            else sample[:-1] + b', "x": ' + _nested(10_000) + b"}",
            (400,),
        ),
        ("huge exponent", b'{"schemaId": 1e999999, "data": 1}', (400,)),
        ("100,000-digit integer", b'{"schemaId": ' + b"9" * 100_000 + b"}", (400,)),
        (
            "100,000-digit alertId",
            _with_essentials(lambda e: e.update(alertId=0)).replace(
                b'"alertId": 0', b'"alertId": ' + b"7" * 100_000
            ),
            (400,),
        ),
        ("NaN schemaId", b'{"schemaId": NaN}', (400,)),
        ("900 KB description, bad condition", _big_description_no_condition(900_000), (400,)),
        ("1 MB string, no schema", b'{"x": "' + b"a" * 1_000_000 + b'"}', (400,)),
        ("UTF-16 sample", sample.decode().encode("utf-16"), (400,)),
        ("UTF-32 sample", sample.decode().encode("utf-32"), (400,)),
        ("10 MB sample", sample[:-1] + b', "pad": "' + b"p" * ten_mb + b'"}', (413,)),
        ("10 MB garbage", b"\xff" * ten_mb, (413,)),
        ("10 MB of nesting", _nested(ten_mb // 2), (413,)),
    ]
    for n, bad in enumerate(INVALID_UTF8):
        cases.append((f"invalid UTF-8 #{n} at the start", bad + sample, (400,)))
        cases.append(
            (f"invalid UTF-8 #{n} in alertId", sample.replace(b"/subscriptions", bad, 1), (400,))
        )
        cases.append((f"invalid UTF-8 #{n} at the end", sample + bad, (400,)))
    return [
        Case(label, [("Content-Type", "application/json")], body, expect)
        for label, body, expect in cases
    ]


@pytest.mark.parametrize("target", BODY_TARGETS, ids=[t.name for t in BODY_TARGETS])
def test_every_kind_of_bad_body_is_refused(receiver: Receiver, target: Target) -> None:
    token = bearer(receiver.token(target))
    cases = bad_bodies()
    assert len(cases) > 60
    for case in cases:
        case.headers.append(("Authorization", token))
        receiver.send(target, case, "bodies")
    receiver.assert_nothing_stored()


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=100),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=25,
)


def _keys_like(mapping: dict[str, Any], name: str) -> list[str]:
    return [k for k in mapping if isinstance(k, str) and k.lower() == name.lower()]


def _drop(mapping: dict[str, Any], name: str) -> None:
    for key in _keys_like(mapping, name):
        del mapping[key]


def _is_condition(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("fired", "resolved")


def _is_no_condition(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


STATEFUL_SERVICES = st.sampled_from(["Platform", "Log Alerts V2", "Prometheus", "Log Analytics"])


DEFECTS = [
    "no schemaId",
    "other schemaId",
    "data not an object",
    "essentials not an object",
    "no alertId",
    "alertId not a string",
    "alertId too long",
    "no monitorCondition",
    "other monitorCondition",
]


def _essentials(payload: dict[str, Any]) -> dict[str, Any]:
    [data_key] = _keys_like(payload, "data")
    [key] = _keys_like(payload[data_key], "essentials")
    essentials: dict[str, Any] = payload[data_key][key]
    return essentials


@st.composite
def broken_samples(draw: st.DrawFn) -> bytes:
    """A published sample, randomly grown, with one defect that makes it no alert."""
    payload = json.loads(SAMPLES[draw(st.sampled_from(sorted(SAMPLES)))])
    essentials = _essentials(payload)
    for _ in range(draw(st.integers(0, 3))):  # harmless noise first
        where = draw(st.sampled_from([payload, essentials]))
        # "x-" keeps noise clear of every key the schema reads (keys match in any case).
        where["x-" + draw(st.text(max_size=8))] = draw(JSON_VALUES)
    defect = draw(st.sampled_from(DEFECTS))
    if defect == "no schemaId":
        _drop(payload, "schemaId")
    elif defect == "other schemaId":
        _drop(payload, "schemaId")
        other = draw(
            JSON_VALUES.filter(
                lambda v: not (isinstance(v, str) and v.strip().lower() == COMMON_SCHEMA_ID.lower())
            )
        )
        payload["schemaId"] = other
    elif defect == "data not an object":
        _drop(payload, "data")
        payload["data"] = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
    elif defect == "essentials not an object":
        [data_key] = _keys_like(payload, "data")
        _drop(payload[data_key], "essentials")
        payload[data_key]["essentials"] = draw(
            JSON_VALUES.filter(lambda v: not isinstance(v, dict))
        )
    elif defect == "no alertId":
        _drop(essentials, "alertId")
    elif defect == "alertId not a string":
        _drop(essentials, "alertId")
        essentials["alertId"] = draw(JSON_VALUES.filter(lambda v: not isinstance(v, str)))
    elif defect == "alertId too long":
        _drop(essentials, "alertId")
        essentials["alertId"] = "/subscriptions/" + "x" * draw(st.integers(1025, 50_000))
    elif defect == "no monitorCondition":
        # Only services that resolve need one: a stateless service's missing or null
        # condition is Fired (docs/queue-message.md, condition defaults).
        _drop(essentials, "monitorCondition")
        _drop(essentials, "monitoringService")
        essentials["monitoringService"] = draw(STATEFUL_SERVICES)
        if draw(st.booleans()):
            essentials["monitorCondition"] = draw(st.sampled_from([None, "", " "]))
    else:
        _drop(essentials, "monitorCondition")
        essentials["monitorCondition"] = draw(
            JSON_VALUES.filter(lambda v: not _is_condition(v) and not _is_no_condition(v))
        )
    return json.dumps(payload, ensure_ascii=draw(st.booleans())).encode()


@pytest.mark.parametrize("target", BODY_TARGETS, ids=[t.name for t in BODY_TARGETS])
@examples(200)
@given(body=broken_samples())
def test_mutated_samples_with_a_defect_are_refused(
    receiver: Receiver, target: Target, body: bytes
) -> None:
    case = Case(
        "mutated sample",
        [("Authorization", bearer(receiver.token(target))), ("Content-Type", "application/json")],
        body,
        expect=(400,),
    )
    receiver.send(target, case, "mutated samples")
    receiver.assert_nothing_stored()


@pytest.mark.parametrize("target", BODY_TARGETS, ids=[t.name for t in BODY_TARGETS])
@examples(150)
@given(
    body=st.one_of(
        st.binary(max_size=2000),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.text(max_size=500).map(str.encode),
    )
)
def test_random_bodies_are_refused(receiver: Receiver, target: Target, body: bytes) -> None:
    assume(COMMON.lower() not in body.lower())  # without the schema id it cannot be an alert
    case = Case(
        "random body",
        [("Authorization", bearer(receiver.token(target))), ("Content-Type", "application/json")],
        body,
        expect=(400,),
    )
    receiver.send(target, case, "random bodies")


# ----------------------------------------------------------------------------- headers

HEADER_NAME = st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N", "P", "S"]), min_size=1, max_size=30
).filter(lambda n: n.lower() not in ("authorization", "content-length"))
HEADER_VALUE = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec="latin-1"), max_size=200),
    st.integers(0, 200_000).map(lambda n: "v" * n),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-16",
        "application/octet-stream",
        "",
        "application/json, text/plain",
        "x" * 10_000,
    ]
)
CONTENT_LENGTHS = st.one_of(
    st.integers(-5, 2**40).map(str), st.sampled_from(["", "abc", "1, 2", "0x10", " 12 ", "1e3"])
)


@st.composite
def hostile_header_cases(draw: st.DrawFn, r: Receiver, target: Target) -> Case:
    """Junk, duplicate and oversized headers around a request that is bad anyway."""
    headers: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(HEADER_NAME)
        for _ in range(draw(st.integers(1, 3))):  # duplicates: the host joins them with ", "
            headers.append((name, draw(HEADER_VALUE)))
    for _ in range(draw(st.integers(0, 2))):
        headers.append(("Content-Type", draw(CONTENT_TYPES)))
    if draw(st.booleans()):
        headers.append(("Content-Length", draw(CONTENT_LENGTHS)))
    body_bad = target.takes_alerts and draw(st.booleans())
    if body_bad:
        authorizations = [("Authorization", bearer(r.token(target)))]
        body = draw(st.one_of(broken_samples(), st.sampled_from([b"", b"{", b"[]", b"\xff"])))
    else:
        bad = draw(st.sampled_from(r.bad_tokens(target)))
        # All of them: a case may hold two Authorization headers, each valid on its own.
        authorizations = [(n, v) for n, v in bad.headers if n.lower() == "authorization"]
        body = target.body or b""
    for authorization in authorizations:
        headers.insert(draw(st.integers(0, len(headers))), authorization)
    order = draw(st.permutations(headers))
    return Case("junk headers", list(order), body)


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@examples(150)
@given(data=st.data())
def test_junk_duplicate_and_oversized_headers_change_nothing(
    receiver: Receiver, target: Target, data: st.DataObject
) -> None:
    case = data.draw(hostile_header_cases(receiver, target))
    receiver.send(target, case, "headers")
    receiver.assert_nothing_stored()


# ----------------------------------------------------------------------------- complexity

SMALL, LARGE = 100_000, 1_000_000  # LARGE stays under MAX_PAYLOAD_BYTES (1 MiB)


def _shapes() -> dict[str, Callable[[int], tuple[bytes, str | None]]]:
    """Large inputs of each kind, sized ~n bytes: (body, Authorization) (None: valid token)."""
    sample = SAMPLES["metric-alert-static-fired"]

    def padded(filler: Callable[[int], bytes]) -> Callable[[int], tuple[bytes, str | None]]:
        # The body parses fully, then fails: no alertId.
        def make(n: int) -> tuple[bytes, str | None]:
            head = b'{"schemaId": "' + COMMON + b'", "data": {"essentials": {}}, "pad": '
            return head + filler(n) + b"}", None

        return make

    return {
        "long string": padded(lambda n: b'"' + b"a" * n + b'"'),
        "escaped string": padded(lambda n: b'"' + b"\\u00e9" * (n // 6) + b'"'),
        "many numbers": padded(lambda n: b"[" + b"1," * (n // 2) + b"1]"),
        "many floats": padded(lambda n: b"[" + b"1.5e300," * (n // 8) + b"0]"),
        "many keys": padded(
            lambda n: b"{" + b",".join(b'"k%06d":0' % i for i in range(n // 12)) + b"}"
        ),
        "same key repeated": padded(lambda n: b"{" + b'"k":0,' * (n // 6) + b'"k":0}'),
        "wide shallow nesting": padded(lambda n: b"[" + b"[[[[]]]]," * (n // 9) + b"[]]"),
        "long digit string": lambda n: (b'{"schemaId": ' + b"9" * n + b"}", None),
        "whitespace only": lambda n: (b" " * n, None),
        "invalid UTF-8 at the end": lambda n: (
            sample[:-1] + b',"p":"' + b"a" * n + b'\xff"}',
            None,
        ),
        "long alertId": lambda n: (
            _with_essentials(lambda e: e.update(alertId="/subscriptions/" + "x" * n)),
            None,
        ),
        "long description, bad condition": lambda n: (_big_description_no_condition(n), None),
        "over the size limit (413)": lambda n: (b"x" * (n * 10 + 1_100_000), None),
        "long Authorization header": lambda n: (sample, "Bearer " + "a" * n),
    }


def _best_time(
    r: Receiver, target: Target, body: bytes, authorization: str, runs: int = 5
) -> tuple[float, str]:
    """The fastest of `runs` answers, and the error code they gave."""
    best = math.inf
    code = ""
    case = Case(
        "timing", [("Authorization", authorization), ("Content-Type", "application/json")], body
    )
    # CPU time of this thread (the request runs in it, in process): other processes on a
    # busy CI machine cannot inflate it the way they inflate wall time. The cyclic GC is off
    # while timing: CPython's collector makes building N containers cost more than N times
    # one (a 1 MB body of small nested arrays holds ~400,000 lists); that is the runtime,
    # not a path of ours, and it would drown what this test looks for.
    gc.collect()
    gc.disable()
    try:
        for _ in range(runs):
            start = time.thread_time()
            response = r.send(target, case, "timing")
            best = min(best, time.thread_time() - start)
            code = f"{response.status_code} {json.loads(response.get_body())['error']}"
    finally:
        gc.enable()
    return best, code


@pytest.mark.parametrize("target", BODY_TARGETS, ids=[t.name for t in BODY_TARGETS])
def test_time_grows_linearly_with_input_size(receiver: Receiver, target: Target) -> None:
    token = bearer(receiver.token(target))
    ratios: dict[str, float] = {}
    for name, make in _shapes().items():
        small_body, small_auth = make(SMALL)
        large_body, large_auth = make(LARGE)
        small, small_code = _best_time(receiver, target, small_body, small_auth or token)
        large, large_code = _best_time(receiver, target, large_body, large_auth or token)
        # Both sizes must take the same path, or the ratio compares two different things.
        assert small_code == large_code, f"{name}: {small_code} at 100 KB, {large_code} at 1 MB"
        # A floor of 0.2 ms keeps O(1) answers (size checks) from dividing noise by noise.
        ratios[name] = large / max(small, 0.0002)
    receiver.assert_nothing_stored()
    report = ", ".join(f"{k}: {v:.1f}x" for k, v in ratios.items())
    print(f"\nCPU time at 1 MB / at 100 KB: {report}")
    slow = {k: v for k, v in ratios.items() if v > RATIO_CEILING}
    assert not slow, f"superlinear: {slow} (all: {report})"


# ----------------------------------------------------------------------------- totals

CORPUS_PARTS = {
    "tokens",
    "token claims",
    "mangled tokens",
    "bodies",
    "mutated samples",
    "random bodies",
    "headers",
    "timing",
}


def test_the_corpus_holds_at_least_a_thousand_requests() -> None:
    if set(SENT) != CORPUS_PARTS:
        pytest.skip(f"only part of the corpus ran: {sorted(SENT)}")
    total = sum(SENT.values())
    print(f"\nhostile requests: {total} ({dict(SENT)})")
    assert total >= MIN_CORPUS

"""Who called (``Principal``), what an API accepts (``AccessPolicy``), and the answers.

``authorize`` judges a verified ``Principal`` against one policy: audience (401), then
delegated tokens, caller app, roles and scopes (403). ``AuthError`` carries the HTTP
answer of any rejection: status, JSON body and ``WWW-Authenticate``/``Retry-After``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.config import AuthSettings

# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called, from a verified token."""

    tenant_id: str
    object_id: str
    caller_app_id: str
    audience: str
    issuer: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...]  # non-empty only for delegated (user) tokens
    token_version: str  # "1.0" or "2.0"
    name: str | None
    upn: str | None  # upn / unique_name (v1) or preferred_username (v2)
    expires_at: datetime

    @property
    def is_delegated(self) -> bool:
        return bool(self.scopes)


def printable(value: object, limit: int = 120) -> str:
    """A claim value fit for a message: printable, short, never a whole token."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _description(text: str) -> str:
    # RFC 6750 error_description: %x20-21 / %x23-5B / %x5D-7E only.
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


class AuthError(Exception):
    """A rejected request: ``status``, ``body`` and ``headers`` make the HTTP answer."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})
        self.correlation_id: str | None = None

    @property
    def body(self) -> dict[str, Any]:
        """JSON body: ``{"error": code, "detail": sentence}`` plus e.g. the missing role."""
        return {"error": self.error, "detail": self.detail, **self.extra}

    def to_json(self) -> str:
        return json.dumps(self.body)


def unauthorized(error: str, detail: str) -> AuthError:
    header = f'Bearer error="invalid_token", error_description="{_description(detail)}"'
    return AuthError(401, error, detail, {"WWW-Authenticate": header})


def forbidden(error: str, detail: str, **extra: Any) -> AuthError:
    header = f'Bearer error="insufficient_scope", error_description="{_description(detail)}"'
    return AuthError(403, error, detail, {"WWW-Authenticate": header}, extra)


def unavailable(detail: str, retry_after: float) -> AuthError:
    seconds = max(1, min(300, math.ceil(retry_after)))
    return AuthError(503, "signing_keys_unavailable", detail, {"Retry-After": str(seconds)})


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class AccessPolicy:
    """What one API accepts, on top of a verified token from a configured tenant.

    ``allowed_caller_app_ids`` None means any app; ``required_roles`` and
    ``required_scopes`` are any-of (empty: none required). Scopes apply to delegated
    tokens only, which are refused unless ``accept_delegated``. ``role_hint`` ends the
    403 for a missing role: where the role comes from and who gets it.
    """

    audiences: tuple[str, ...]
    allowed_caller_app_ids: tuple[str, ...] | None = None
    required_roles: tuple[str, ...] = ()
    accept_delegated: bool = False
    required_scopes: tuple[str, ...] = ()
    role_hint: str = "assign it to the caller"
    _audiences: frozenset[str] = field(init=False, repr=False, compare=False)
    _apps: frozenset[str] | None = field(init=False, repr=False, compare=False)
    _roles: frozenset[str] = field(init=False, repr=False, compare=False)
    _scopes: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.audiences:
            raise ValueError("AccessPolicy needs at least one audience")
        # Precomputed sets keep the per-request checks to a few hash lookups.
        object.__setattr__(self, "_audiences", frozenset(norm_aud(a) for a in self.audiences))
        apps = self.allowed_caller_app_ids
        object.__setattr__(
            self, "_apps", None if apps is None else frozenset(a.lower() for a in apps)
        )
        object.__setattr__(self, "_roles", frozenset(self.required_roles))
        object.__setattr__(self, "_scopes", frozenset(self.required_scopes))

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> AccessPolicy:
        """The Secure Webhook (ingest) policy: app tokens of the allowed callers only."""
        return cls(
            audiences=auth.audiences,
            allowed_caller_app_ids=auth.allowed_caller_app_ids,
            required_roles=(auth.required_role,) if auth.required_role else (),
            accept_delegated=False,
            role_hint="AAD_REQUIRED_ROLE; assign it to the caller's service principal",
        )


GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def norm_aud(value: str) -> str:
    # Client ids are GUIDs: compare them case-insensitively; URIs stay exact.
    if len(value) == 36 and GUID.fullmatch(value):
        return value.lower()
    return value


def audience_spellings(audiences: tuple[str, ...]) -> tuple[str, ...]:
    """The audiences handed to PyJWT, which compares exactly: a GUID in both cases."""
    spellings = dict.fromkeys(audiences)
    for aud in audiences:
        if GUID.fullmatch(aud):
            spellings.update(dict.fromkeys((aud.lower(), aud.upper())))
    return tuple(spellings)


# --------------------------------------------------------------------------- authorization


def authorize(principal: Principal, policy: AccessPolicy) -> None:
    if principal.audience not in policy._audiences:  # both normalized by norm_aud
        raise unauthorized(
            "invalid_audience",
            f"The token audience {printable(principal.audience)} is not accepted (AAD_AUDIENCES).",
        )
    if principal.scopes and not policy.accept_delegated:
        raise forbidden(
            "delegated_token_not_allowed",
            "Delegated (user) tokens are not accepted here; use an application token.",
        )
    apps = policy._apps
    if apps is not None and principal.caller_app_id not in apps:
        raise forbidden(
            "caller_app_not_allowed",
            f"The caller app {principal.caller_app_id} is not allowed "
            "(AAD_ALLOWED_CALLER_APP_IDS).",
            caller_app_id=principal.caller_app_id,
        )
    if policy._roles and policy._roles.isdisjoint(principal.roles):
        required = sorted(policy._roles)
        raise forbidden(
            "missing_role",
            f"The token lacks the app role {' or '.join(required)} ({policy.role_hint}).",
            required_roles=required,
            caller_app_id=principal.caller_app_id,
        )
    if principal.scopes and policy._scopes and policy._scopes.isdisjoint(principal.scopes):
        required = sorted(policy._scopes)
        raise forbidden(
            "missing_scope",
            f"The token lacks the scope {' or '.join(required)}.",
            required_scopes=required,
        )

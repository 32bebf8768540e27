"""Who may call the work item API, and how a caller is named in the history.

The API reuses the ingest's token settings (AAD_TENANT_IDS, AAD_AUDIENCES) with its own
policy: any caller app (people use many clients), application and delegated (user) tokens,
and the app roles below. A delegated token must carry both the user's app role (`roles`)
and our scope (`scp` holds `user_impersonation`): the scope says the client app may act for
the user at all, the role says what the user may do. The ingest role
(ActionGroupsSecureWebhook) grants nothing here, and these roles grant nothing on
`/api/alerts` (the ingest policy requires its own role, refuses delegated tokens and
allows only the AzNS caller app).

Tenants (docs/security.md, "Tenant model"): a caller sees the work items and CIs of its own
tenant (the token's `tid`) only; callers from AAD_OPERATOR_TENANT_IDS see every tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import table_keys
from shared.auth import AccessPolicy, Principal
from shared.config import AuthSettings, Settings
from shared.store import Actor

READ_ROLE = "WorkItems.Read"
WRITE_ROLE = "WorkItems.ReadWrite"
API_SCOPE = "user_impersonation"

USER = "user"
APPLICATION = "application"

_policies: dict[tuple[AuthSettings, bool], AccessPolicy] = {}


def policy(auth: AuthSettings, *, write: bool) -> AccessPolicy:
    """The read (WorkItems.Read or .ReadWrite) or write (WorkItems.ReadWrite) policy.

    One object per settings value: the verifier memoizes its decisions per policy object.
    """
    key = (auth, write)
    found = _policies.get(key)
    if found is None:
        found = AccessPolicy(
            audiences=auth.audiences,
            allowed_caller_app_ids=None,
            required_roles=(WRITE_ROLE,) if write else (READ_ROLE, WRITE_ROLE),
            accept_delegated=True,
            required_scopes=(API_SCOPE,),
            role_hint="an app role of this API: assign it to the user, a group of theirs or "
            "the calling app's service principal, see docs/deploy.md",
        )
        if len(_policies) > 16:
            _policies.clear()
        _policies[key] = found
    return found


def actor(principal: Principal) -> Actor:
    """Who the history says made a change: a user (oid, upn) or an application (its app id)."""
    if principal.is_delegated:
        name = principal.upn or principal.name or principal.object_id
        return Actor(name, USER, principal.object_id, principal.caller_app_id)
    app = principal.caller_app_id
    return Actor(f"app {app}", APPLICATION, principal.object_id, app)


@dataclass(frozen=True)
class Caller:
    """Whose data a request may see: its tenant, and whether that tenant operates them all."""

    tenant: str  # the token's tid, lowercase
    operator: bool

    @property
    def reads(self) -> str | None:
        """The tenant a point read (detail, PATCH, history, payload, CI) is confined to;
        None: any (an operator)."""
        return None if self.operator else self.tenant


def caller(settings: Settings, principal: Principal) -> Caller:
    tenant = table_keys.tenant_key(principal.tenant_id)
    return Caller(tenant, tenant in settings.operator_tenant_ids)

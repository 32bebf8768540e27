"""Entra ID clouds: which authority hosts, token issuers and key URLs belong together.

The v1 issuer host cannot be derived from the authority host by a rule, hence ``CLOUDS``.
Sources of each host: docs/security.md ("Issuers per cloud").
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Cloud:
    name: str
    authority_hosts: tuple[str, ...]
    v1_issuer_hosts: tuple[str, ...]
    v2_issuer_host: str


CLOUDS: tuple[Cloud, ...] = (
    Cloud(
        "Azure public",
        ("login.microsoftonline.com", "login.windows.net", "login.microsoft.com"),
        ("sts.windows.net",),
        "login.microsoftonline.com",
    ),
    Cloud(
        "Azure US Government",
        ("login.microsoftonline.us", "login.usgovcloudapi.net"),
        # Microsoft Q&A names sts.windows.net; the Bot Framework SDK accepts
        # login.microsoftonline.us for Government v1 tokens. Both are signed with the
        # Government keys we fetch, so accepting both widens nothing.
        ("sts.windows.net", "login.microsoftonline.us"),
        "login.microsoftonline.us",
    ),
    Cloud(
        "Azure China (21Vianet)",
        ("login.partner.microsoftonline.cn", "login.chinacloudapi.cn"),
        ("sts.chinacloudapi.cn",),
        "login.partner.microsoftonline.cn",
    ),
)


def cloud_for_authority(authority_host: str) -> Cloud | None:
    """The cloud whose authority aliases include this URL's host, or None."""
    host = (urlsplit(authority_host).hostname or "").lower()
    return next((c for c in CLOUDS if host in c.authority_hosts), None)


def issuers_for_tenant(authority_host: str, tenant_id: str) -> dict[str, str]:
    """Accepted ``iss`` values for one tenant, mapped to the token version they imply."""
    authority = authority_host.rstrip("/")
    issuers = {f"{authority}/{tenant_id}/v2.0": "2.0"}
    cloud = cloud_for_authority(authority)
    if cloud is not None:
        issuers[f"https://{cloud.v2_issuer_host}/{tenant_id}/v2.0"] = "2.0"
        for host in cloud.v1_issuer_hosts:
            issuers[f"https://{host}/{tenant_id}/"] = "1.0"
    return issuers


def is_entra_url(url: str) -> bool:
    parts = urlsplit(url)
    hosts = {h for cloud in CLOUDS for h in cloud.authority_hosts}
    return parts.scheme == "https" and (parts.hostname or "").lower() in hosts


def default_jwks_uri(authority_host: str, tenant_id: str) -> str:
    return f"{authority_host.rstrip('/')}/{tenant_id}/discovery/v2.0/keys"

"""Links a work item can show: the investigation page, the alert in the portal, log results.

Only absolute http(s) URLs without whitespace or control characters are kept: they end up
as clickable links in ITSM tools, where `javascript:` and friends must never appear.
Overlong URLs are dropped rather than cut, since a cut URL is useless.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from shared.alerts.values import plain

# The portal's own "Copy link" form for an alert instance. Microsoft documents no URL
# format; this is the one the portal produces (and that integrations use).
PORTAL_ALERT_URL = (
    "https://portal.azure.com/#view/Microsoft_Azure_Monitoring_Alerts/AlertDetails.ReactView"
    "/alertId~/"
)

_PLAIN_ID = re.compile(r"[A-Za-z0-9_.~/-]*\Z")  # characters quote(safe="") leaves alone, and /

MAX_LINK = 2048
MAX_SEARCH_LINKS = 4
SEARCH_LINKS_BUDGET = 3072


def safe_url(value: object, max_len: int = MAX_LINK) -> str | None:
    """`value` if it is an absolute http(s) URL that is safe to render, else None."""
    if not isinstance(value, str) or len(value) > max_len:
        return None
    s = value.strip()
    head = s[:8].lower()
    if not (head.startswith("https://") or head.startswith("http://")) or len(s) < 10:
        return None
    if " " in s or not plain(s):
        return None
    return s


def portal_link(alert_id: str) -> str | None:
    """The Azure portal page of the alert instance, for an alert id that is an ARM id."""
    if alert_id[:15].lower() != "/subscriptions/":
        return None
    if _PLAIN_ID.match(alert_id):  # the usual case; urllib's quote costs microseconds
        encoded = alert_id.replace("/", "%2F")
    else:
        encoded = quote(alert_id, safe="")
    url = PORTAL_ALERT_URL + encoded
    return url if len(url) <= MAX_LINK + 1024 else None


def search_links(contexts: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    """Deduplicated safe links found under `keys` in each context, in that order."""
    links: list[str] = []
    used = 0
    for ctx in contexts:
        for key in keys:
            value = ctx.get(key)
            if value in links:  # Azure repeats links under several keys: checked once
                continue
            url = safe_url(value)
            if url is None or url in links:
                continue
            if len(links) >= MAX_SEARCH_LINKS:
                return links
            if used + len(url) > SEARCH_LINKS_BUDGET:
                continue
            links.append(url)
            used += len(url)
    return links


def build(
    investigation_link: object, alert_id: str, search_results: Sequence[str]
) -> dict[str, Any]:
    return {
        "investigation": safe_url(investigation_link),
        "portal": portal_link(alert_id),
        "searchResults": list(search_results),  # a fresh list per message
    }

"""The queue message contract version (docs/queue-message.md).

A minor bump adds fields (consumers ignore fields they do not know); a major bump changes
or removes them, and a consumer rejects majors it does not know instead of misreading.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.alerts.errors import UNSUPPORTED_VERSION, SchemaError

SCHEMA_VERSION = "1.1"
SUPPORTED_MAJOR = 1


def major_version(alert: Mapping[str, Any]) -> int:
    """The major version of a normalized alert; SchemaError when it has no usable one."""
    version = alert.get("schemaVersion")
    if isinstance(version, str):
        major, _, minor = version.partition(".")
        if major.isdigit() and major.isascii() and (not minor or minor.isdigit()):
            return int(major)
    raise SchemaError(
        UNSUPPORTED_VERSION,
        f"The alert has no valid schemaVersion (got {str(version)[:40]!r}); expected "
        f'"major.minor" such as "{SCHEMA_VERSION}".',
        "schemaVersion",
    )


def is_supported(alert: Mapping[str, Any]) -> bool:
    """True when this code understands the alert's major version."""
    try:
        return major_version(alert) == SUPPORTED_MAJOR
    except SchemaError:
        return False

"""Azure Monitor common alert schema: parse a webhook body, normalize it for the queue.

    payload = parse_payload(body)            # SchemaError -> 400
    alert = normalize(payload, tenant_id=..., correlation_id=..., received_at=...)

The normalized alert is the queue message contract, documented in docs/queue-message.md.
"""

from shared.alerts.errors import SchemaError
from shared.alerts.normalize import normalize
from shared.alerts.payload import parse_payload
from shared.alerts.version import SCHEMA_VERSION, is_supported, major_version

__all__ = [
    "SCHEMA_VERSION",
    "SchemaError",
    "is_supported",
    "major_version",
    "normalize",
    "parse_payload",
]

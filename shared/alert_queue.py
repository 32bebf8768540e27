"""The `alerts` queue: what ingest writes and the processor reads, with claim checks.

We send with our own queue client instead of an output binding: the host writes an
output binding after the function has returned, so a failed write would reach Azure
Monitor as a 500 (not retried) after we had already decided to answer 2xx. Writing
ourselves lets ingest answer 503, which Azure Monitor retries.

Message text is plain JSON (host.json `messageEncoding: none`): ASCII-only so it is
always valid XML text, and a full 64 KiB instead of 48 KiB after base64. An envelope
that does not fit is stored as a blob and the message carries a pointer to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings

from shared import storage
from shared.config import ALERTS_QUEUE, CLAIM_CHECK_CONTAINER, StorageSettings

# Must equal host.json extensions.queues.messageEncoding (a test holds them together).
MESSAGE_ENCODING = "none"
# Azure Storage's limit is 64 KiB of (XML-escaped) message text; keep headroom.
MAX_INLINE_MESSAGE_BYTES = 60 * 1024
# A table property holds at most 64 KiB of binary; a deflated envelope above this goes to
# a blob instead (rare: JSON alerts deflate about 5 to 10 times).
MAX_TABLE_PAYLOAD_BYTES = 60 * 1024


class QueueUnavailable(Exception):
    """The queue or the claim-check blob could not be written: answer 503 so it is retried."""


class NotEncodable(ValueError):
    """The payload parsed but cannot be re-serialized (nested deeper than the encoder goes)."""


class CorruptMessage(Exception):
    """A message that can never be processed (bad JSON, broken claim-check pointer)."""


@dataclass(frozen=True)
class PayloadRef:
    """Where an envelope (normalized alert plus raw payload) is stored as a blob."""

    container: str
    blob: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "blob": self.blob,
            "sha256": self.sha256,
            "size": self.size,
        }


@dataclass(frozen=True)
class QueuedAlert:
    alert: dict[str, Any]
    raw: Any  # the payload as Azure Monitor sent it (parsed JSON)
    ref: PayloadRef | None  # set when the envelope came through a claim check
    text: str | None = None  # the message text when the envelope came inline


@dataclass(frozen=True)
class DeflatedEnvelope:
    """An inline envelope, deflated to fit a table property (the history entry keeps it)."""

    data: bytes  # zlib stream of the message text (JSON: {"alert": ..., "raw": ...})
    sha256: str  # of the message text itself


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _wire_size(text: str) -> int:
    return len(escape(text, {'"': "&quot;"}).encode("ascii"))


def _blob_name(envelope_bytes: bytes, received_at: datetime) -> tuple[str, str]:
    digest = hashlib.sha256(envelope_bytes).hexdigest()
    return f"{received_at:%Y/%m/%d}/{digest}.json", digest


def _upload(settings: StorageSettings, data: bytes, received_at: datetime) -> PayloadRef:
    name, digest = _blob_name(data, received_at)
    blob = storage.blob_client(settings, CLAIM_CHECK_CONTAINER, name)
    content = ContentSettings(content_type="application/json")
    try:
        blob.upload_blob(data, overwrite=True, content_settings=content)
    except ResourceNotFoundError:
        # First write to a fresh account (Azurite, or a deployment that lost the container).
        container = storage.blob_service(settings).get_container_client(CLAIM_CHECK_CONTAINER)
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        blob.upload_blob(data, overwrite=True, content_settings=content)
    return PayloadRef(CLAIM_CHECK_CONTAINER, name, digest, len(data))


def _send(settings: StorageSettings, text: str) -> None:
    queue = storage.queue_client(settings, ALERTS_QUEUE)
    try:
        queue.send_message(text)
    except ResourceNotFoundError:
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        queue.send_message(text)


def encode(alert: Mapping[str, Any], raw: Any) -> str:
    try:
        return _dumps({"alert": alert, "raw": raw})
    except (RecursionError, ValueError) as exc:
        raise NotEncodable(f"the payload cannot be re-encoded: {type(exc).__name__}") from None


def enqueue(settings: StorageSettings, alert: Mapping[str, Any], raw: Any) -> str:
    """Queue one normalized alert with its raw payload; returns "inline" or "claimCheck".

    Raises QueueUnavailable on any storage failure, so nothing accepted is ever lost
    silently, and NotEncodable (before any write) for a payload that cannot be queued.
    """
    text = encode(alert, raw)
    try:
        if _wire_size(text) <= MAX_INLINE_MESSAGE_BYTES:
            _send(settings, text)
            return "inline"
        ref = _upload(settings, text.encode("ascii"), datetime.now(UTC))
        pointer = {
            "schemaVersion": alert.get("schemaVersion"),
            "alertId": alert.get("alertId"),
            "correlationId": alert.get("correlationId"),
            "claimCheck": ref.to_dict(),
        }
        _send(settings, _dumps(pointer))
        return "claimCheck"
    except AzureError as exc:
        raise QueueUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _parse_ref(value: Any) -> PayloadRef:
    try:
        ref = PayloadRef(
            container=str(value["container"]),
            blob=str(value["blob"]),
            sha256=str(value["sha256"]),
            size=int(value["size"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptMessage(f"claim-check pointer is malformed: {exc!r}") from None
    if ref.container != CLAIM_CHECK_CONTAINER or ".." in ref.blob:
        raise CorruptMessage(f"claim-check pointer names an unexpected blob: {ref.blob!r}")
    return ref


def decode(settings: StorageSettings, text: str) -> QueuedAlert:
    """Turn a queue message back into the alert; fetches the blob behind a claim check.

    Raises CorruptMessage for messages that will never succeed; storage errors
    (AzureError) propagate so the host retries the message.
    """
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptMessage(f"message is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise CorruptMessage("message is not a JSON object")
    ref: PayloadRef | None = None
    if "claimCheck" in message:
        ref = _parse_ref(message["claimCheck"])
        blob = storage.blob_client(settings, ref.container, ref.blob)
        try:
            data = blob.download_blob().readall()
        except ResourceNotFoundError:
            raise CorruptMessage(f"claim-check blob {ref.blob} does not exist") from None
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise CorruptMessage(f"claim-check blob {ref.blob} does not match its sha256")
        try:
            message = json.loads(data)
        except ValueError as exc:
            raise CorruptMessage(f"claim-check blob {ref.blob} is not JSON: {exc}") from None
    alert = message.get("alert") if isinstance(message, dict) else None
    if not isinstance(alert, dict):
        raise CorruptMessage("message has no 'alert' object")
    return QueuedAlert(
        alert=alert, raw=message.get("raw"), ref=ref, text=text if ref is None else None
    )


def deflated(queued: QueuedAlert) -> DeflatedEnvelope | None:
    """The inline envelope compressed for a table property; None if it needs a blob.

    Keeping the raw payload in the event's history entry costs nothing on the way: it rides
    in the group's transaction, where a blob would be one more request per event.
    """
    if queued.text is None:
        return None
    text = queued.text.encode("utf-8")
    data = zlib.compress(text, 6)
    if len(data) > MAX_TABLE_PAYLOAD_BYTES:
        return None
    return DeflatedEnvelope(data, hashlib.sha256(text).hexdigest())


def stored_envelope(settings: StorageSettings, path: str) -> Any:
    """The envelope a history entry's `payloadBlob` ("container/name") points at.

    Raises CorruptMessage for a name that is not one of our claim checks, and
    ResourceNotFoundError when the blob is gone (retention deletes it with its item).
    """
    container, _, name = path.partition("/")
    if container != CLAIM_CHECK_CONTAINER or not name or ".." in name:
        raise CorruptMessage(f"payload blob name is not a claim check: {path[:200]!r}")
    data = storage.blob_client(settings, container, name).download_blob().readall()
    try:
        return json.loads(data)
    except ValueError as exc:
        raise CorruptMessage(f"payload blob {name} is not JSON: {exc}") from None


def inflate(data: bytes) -> Any:
    """The envelope a history entry's `payload` property holds (see `deflated`)."""
    return json.loads(zlib.decompress(data))


def ensure_stored(settings: StorageSettings, queued: QueuedAlert) -> PayloadRef:
    """A blob pointer to the envelope, uploading it if it came inline (and is too big to
    keep in a table property: `deflated`).

    The name is content-addressed, so a retried message rewrites the same blob.
    """
    if queued.ref is not None:
        return queued.ref
    data = encode(queued.alert, queued.raw).encode("ascii")
    received = _received_at(queued.alert)
    return _upload(settings, data, received)


def _received_at(alert: Mapping[str, Any]) -> datetime:
    value = alert.get("receivedAt")
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime(1970, 1, 1, tzinfo=UTC)

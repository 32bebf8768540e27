"""Entity group transactions without azure-core's email-based multipart code.

THE ONLY MODULE IN THE PROJECT ALLOWED PRIVATE SDK ACCESS (tests/test_private_access.py
fails on any other). It imports `azure.data.tables._table_batch.TableBatchOperations` and
reads the table client's `_client`, `_primary_hostname` and `_cosmos_endpoint`, as the
SDK's own submit_transaction does. azure-data-tables is pinned exactly (requirements.in),
and tests/test_table_batch_differential.py, the gate for any upgrade of it, proves on a
corpus that this module's requests, answers and errors are the SDK's.

Why: azure-data-tables builds and parses a transaction's multipart body with the standard
library's `email` package and starts two thread pools per call: about 5 ms of CPU per
transaction on a small VM, more than the HTTP request itself, and the processor sends one
or two per alert. Measured in benchmarks/bench_storage_transport.py, this path costs about
a fifth of the SDK's default one and under a third of the SDK's on our transport, so it
stays. Here the SDK still builds every inner request (TableBatchOperations: URLs, escaped
keys, ETag conditions, typed JSON), the envelope around them is written byte for byte as
azure-core writes it, it goes out through the table client's own pipeline
(authentication, retries, API version), and the answer is split by hand. Errors are
raised as the SDK raises them: TableTransactionError with the failing operation's
`index`, or the service error for the whole request (TableNotFound, ...).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from email.utils import formatdate
from typing import Any

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.rest import HttpRequest
from azure.data.tables import TableClient, TableTransactionError
from azure.data.tables._table_batch import TableBatchOperations

CRLF = b"\r\n"
_BY_STATUS: dict[int, type[HttpResponseError]] = {
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    412: ResourceModifiedError,
}


class _Part:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _inner(index: int, request: HttpRequest, changeset: str, date: str) -> bytes:
    body = request.content if isinstance(request.content, bytes) else b""
    if isinstance(request.content, str):
        body = request.content.encode("utf-8")
    headers = dict(request.headers)
    if body:
        headers["Content-Length"] = str(len(body))
    headers["x-ms-date"] = date  # what the SDK's StorageHeadersPolicy adds to each part
    headers["Date"] = date
    lines = [
        f"--{changeset}",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        f"Content-ID: {index}",
        "",
        f"{request.method} {request.url} HTTP/1.1",
        *(f"{name}: {value}" for name, value in headers.items()),
        "",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8") + body + CRLF


def envelope(requests: list[HttpRequest], batch: str, changeset: str, date: str) -> bytes:
    """The multipart/mixed body of a transaction, as azure-core writes it."""
    head = f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
    parts = [head.encode("utf-8")]
    parts.extend(_inner(i, r, changeset, date) for i, r in enumerate(requests))
    parts.append(f"--{changeset}--\r\n\r\n--{batch}--\r\n".encode())
    return b"".join(parts)


def _boundary(content_type: str) -> str:
    for piece in content_type.split(";"):
        name, _, value = piece.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip('"')
    raise ValueError(f"no boundary in {content_type!r}")


def _headers(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def parse(content_type: str, data: bytes) -> list[_Part]:
    """The inner responses of a transaction's multipart answer, in order."""
    outer = _boundary(content_type).encode()
    changeset_part = data.split(b"--" + outer)[1]
    head, _, rest = changeset_part.partition(CRLF + CRLF)
    inner = _boundary(_headers(head.lstrip(CRLF)).get("content-type", "")).encode()
    parts = []
    for chunk in rest.split(b"--" + inner)[1:]:
        if chunk.startswith(b"--"):
            break
        _, _, http = chunk.partition(CRLF + CRLF)
        status_line, _, remainder = http.partition(CRLF)
        block, _, body = remainder.partition(CRLF + CRLF)
        parts.append(_Part(int(status_line.split()[1]), _headers(block), body.rstrip(CRLF)))
    return parts


def _error(
    status: int, body: bytes, kind: type[HttpResponseError], error_code: str | None = None
) -> HttpResponseError:
    code, message = error_code, body.decode("utf-8", "replace")
    try:
        odata = json.loads(body)["odata.error"]
        code = odata.get("code") or code
        message = odata["message"]["value"]
    except (ValueError, KeyError, TypeError):
        pass
    error = kind(message=f"{message}\nErrorCode:{code}")
    error.status_code = status
    error.error_code = code  # type: ignore[attr-defined]
    if isinstance(error, TableTransactionError):
        head = message.split(":", 1)[0]
        error.index = int(head) if head.isdigit() else 0
    return error


def submit_transaction(
    table: TableClient, operations: Iterable[tuple[Any, ...]]
) -> list[Mapping[str, Any]]:
    """Like TableClient.submit_transaction: all or nothing, one metadata dict per operation."""
    endpoint = f"{table.scheme}://{table._primary_hostname}"
    batch = TableBatchOperations(
        config=table._client._config,
        endpoint=endpoint,
        table_name=table.table_name,
        is_cosmos_endpoint=table._cosmos_endpoint,
    )
    for operation in operations:
        batch.add_operation(operation)
    boundary, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    request = HttpRequest(
        "POST",
        f"{endpoint}/$batch",
        headers={
            "x-ms-version": table.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": f"multipart/mixed; boundary={boundary}",
            "Accept": "application/json",
        },
        content=envelope(batch.requests, boundary, changeset, formatdate(usegmt=True)),
    )
    response = table._client.send_request(request, stream=True)
    data = response.read()
    if response.status_code != 202:
        kind = _BY_STATUS.get(response.status_code, HttpResponseError)
        raise _error(response.status_code, data, kind, response.headers.get("x-ms-error-code"))
    parts = parse(response.headers["content-type"], data)
    for part in parts:
        if not 200 <= part.status < 300:
            raise _error(part.status, part.body, TableTransactionError)
    if len(parts) != len(batch.requests):
        raise HttpResponseError(f"{len(parts)} answers to {len(batch.requests)} operations")
    return [{"etag": p.headers["etag"]} if "etag" in p.headers else {} for p in parts]

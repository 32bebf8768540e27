"""What the Functions host puts in the worker's messages, and what it makes of the answers.

Pure conversions, each after the host code it mirrors (azure-functions-host, WebJobs.Script.Grpc):
- an HTTP request -> `RpcHttp` + trigger metadata: `GrpcMessageConversionExtensions.ToRpcHttp`
  with the capabilities the worker returned at init, as ASP.NET Core presents the request
  (Kestrel joins a repeated header's values with ",", the query collection joins a repeated
  key's values with "," and matches keys case-insensitively, `Request.Path` is unescaped
  except for %2F, and the body is forwarded only when `ContentLength > 0`,
  azure-functions-host#4926);
- a queue message -> the trigger input and binding data (`ScriptInvocationContextExtensions`
  and the queue extension's binding data: Id, PopReceipt, QueueTrigger as strings,
  DequeueCount and the times through `ToRpcDefault`, i.e. JSON);
- the worker's `RpcHttp` answer -> an HTTP response (status, headers as the worker set them,
  Content-Type included, body), and output bindings' `TypedData` -> values to write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

import azure.functions as func

OWS = " \t"  # HTTP optional whitespace, which Kestrel trims from header values


def join_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Kestrel's header dictionary as the host reads it: names case-insensitive (kept
    lower-case, as ToRpcHttp sends them), a repeated header one value joined with ","."""
    joined: dict[str, list[str]] = {}
    for name, value in pairs:
        joined.setdefault(name.lower(), []).append(value.strip(OWS))
    return {name: ",".join(values) for name, values in joined.items()}


def query_values(query: str) -> dict[str, str]:
    """ASP.NET Core's query collection, each key's values joined with "," (StringValues),
    keys compared case-insensitively (the first spelling is kept), '+' read as a space."""
    grouped: dict[str, list[str]] = {}
    spelling: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        folded = key.lower()
        spelling.setdefault(folded, key)
        grouped.setdefault(folded, []).append(value)
    return {spelling[k]: ",".join(v) for k, v in grouped.items()}


def unescaped_path(path: str) -> str:
    """`HttpRequest.Path`: percent-decoded, except %2F, which would change the segments."""
    return "%2F".join(unquote(part) for part in re.split("%2[Ff]", path))


def content_length(headers: Mapping[str, str]) -> int | None:
    """`HttpRequest.ContentLength`: null for a chunked request (Transfer-Encoding wins over
    Content-Length) and for a value that is no non-negative integer."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None
    value = headers.get("content-length", "").strip(OWS)
    return int(value) if value.isascii() and value.isdigit() else None


def _json(p: Any, value: Any) -> Any:
    """ToRpcDefault: an object the host has no dedicated type for is sent as JSON."""
    return p.TypedData(json=json.dumps(value, separators=(",", ":")))


def http_request(
    p: Any,
    capabilities: Mapping[str, str],
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    route_params: Mapping[str, str],
) -> tuple[Any, dict[str, Any]]:
    """ToRpcHttp for a worker that does not proxy HTTP: (the trigger's TypedData, metadata).

    `headers` as join_headers() made them; `url` as the host rebuilds it (scheme, Host,
    unescaped path, raw query string); `route_params` the route values (unescaped)."""
    if "HttpUri" in capabilities:
        raise NotImplementedError("the worker asked to proxy HTTP (HttpUri): not played here")
    if capabilities.get("UseNullableValueDictionaryForHttp"):
        raise NotImplementedError("nullable HTTP dictionaries: not played here")
    http = p.RpcHttp(method=method, url=url)
    query = query_values(url.partition("?")[2])
    for key, value in query.items():
        if value:  # without nullable dictionaries the host drops empty query values
            http.query[key] = value
    ignore_empty = bool(capabilities.get("IgnoreEmptyValuedRpcHttpHeaders"))
    sent_headers = {k: v for k, v in headers.items() if v or not ignore_empty}
    for key, value in sent_headers.items():
        http.headers[key] = value
    for key, value in route_params.items():
        http.params[key] = value
    length = content_length(headers)
    if length is not None and length > 0:
        if not capabilities.get("RpcHttpBodyOnly"):
            raise NotImplementedError("body and rawBody both (no RpcHttpBodyOnly): not played")
        content_type = headers.get("content-type", "")
        binary = content_type.startswith("application/octet-stream") or "multipart/" in (
            content_type
        )
        if binary or capabilities.get("RawHttpBodyBytes"):
            http.body.CopyFrom(p.TypedData(bytes=body))
        else:
            http.body.CopyFrom(p.TypedData(string=body.decode("utf-8", "replace")))
    if not capabilities.get("RpcHttpTriggerMetadataRemoved"):
        raise NotImplementedError("the request inside the trigger metadata: not played here")
    # Binding data without the request itself: Query and Headers (dictionaries, so JSON)
    # and each route value (a string).
    metadata: dict[str, Any] = {
        "Query": _json(p, query),
        "Headers": _json(p, sent_headers),
    }
    for key, value in route_params.items():
        metadata[key] = p.TypedData(string=value)
    return p.TypedData(http=http), metadata


def _typed_value(data: Any) -> Any:
    kind = data.WhichOneof("data")
    return getattr(data, kind) if kind else None


def http_response(p: Any, answer: Any) -> func.HttpResponse:
    """The host's answer to a successful invocation of an HTTP function."""
    value = answer.return_value
    kind = value.WhichOneof("data")
    if kind == "string":  # a function returning str: 200 with that text
        return func.HttpResponse(value.string, status_code=200, mimetype="text/plain")
    if kind != "http":
        raise TypeError(f"HTTP function answered {kind!r}, not an HTTP response")
    rpc = value.http
    headers = dict(rpc.headers)
    body = _typed_value(rpc.body)
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    mimetype, _, parameters = content_type.partition(";")
    charset = re.search(r"charset=([^;\s]+)", parameters, re.IGNORECASE)
    return func.HttpResponse(
        raw,
        status_code=int(rpc.status_code or 200),
        headers=headers,
        mimetype=mimetype.strip() or None,
        charset=charset.group(1) if charset else "utf-8",
    )


def _dotnet_time(value: datetime | None) -> str | None:
    """Newtonsoft's DateTimeOffset: ISO 8601, trailing zero fractions dropped, +00:00."""
    if value is None:
        return None
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "+00:00"


def queue_trigger(p: Any, message: Any, body: bytes, *, binary: bool) -> tuple[Any, dict[str, Any]]:
    """The queue trigger's input (str, or bytes when the binding says dataType binary) and
    binding data, for a message leased from the storage queue and decoded per host.json."""
    text = body.decode("utf-8", "replace")
    data = p.TypedData(bytes=body) if binary else p.TypedData(string=text)
    metadata = {
        "QueueTrigger": p.TypedData(string=text),
        "Id": p.TypedData(string=message.id),
        "PopReceipt": p.TypedData(string=message.pop_receipt),
        "DequeueCount": _json(p, int(message.dequeue_count)),
        "InsertionTime": _json(p, _dotnet_time(message.inserted_on)),
        "ExpirationTime": _json(p, _dotnet_time(message.expires_on)),
        "NextVisibleTime": _json(p, _dotnet_time(message.next_visible_on)),
    }
    return data, metadata


def timer_trigger(p: Any, *, past_due: bool) -> Any:
    """The timer trigger's input: the WebJobs TimerInfo as JSON (schedule status omitted, as
    for a schedule that keeps none)."""
    return _json(
        p, {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": past_due}
    )


def output_messages(data: Any) -> list[str | bytes]:
    """The messages a queue output binding's TypedData stands for (a JSON array: each item)."""
    value = _typed_value(data)
    if data.WhichOneof("data") == "json":
        parsed = json.loads(value)
        items = parsed if isinstance(parsed, list) else [parsed]
        return [i if isinstance(i, str) else json.dumps(i) for i in items]
    if data.WhichOneof("data") in ("collection_string", "collection_bytes"):
        return list(value.string if hasattr(value, "string") else value.bytes)
    return [] if value is None else [value]

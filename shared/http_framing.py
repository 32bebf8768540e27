"""HTTP/1.1 framing for shared/storage_transport.py: the request head it writes, the answers it
reads (status line, headers, Content-Length, chunked or connection-delimited bodies), the
multipart/mixed answers of batch requests, and Content-Encoding.

Written here rather than taken from http.client because http.client parses every answer's
headers with the email package and writes head and body separately: together about a fifth
of a storage request's client CPU once the rest of the stack is lean (py-spy, see README,
"Storage client CPU"). Limits are http.client's: 64 KiB lines, 100 headers. Anything else
malformed raises ProtocolError (an http.client.HTTPException).
"""

from __future__ import annotations

import http.client
import re
import zlib
from collections.abc import Mapping, MutableMapping
from typing import Any

from azure.core.utils import case_insensitive_dict

CRLF = b"\r\n"
MAX_LINE = 65536
MAX_HEADERS = 100
BODY_METHODS = frozenset(("POST", "PUT", "PATCH", "MERGE"))
NO_BODY_STATUS = frozenset((204, 304))
_BAD_TARGET = re.compile("[\x00-\x20\x7f]")


class ProtocolError(http.client.HTTPException):
    """The server's answer is not well-formed HTTP/1.1 (or stopped short)."""


def decoded_body(headers: Mapping[str, str], data: bytes) -> bytes:
    """The body without its Content-Encoding, as requests would hand it over."""
    coding = headers.get("Content-Encoding", "").strip().lower()
    if coding == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        try:
            return zlib.decompress(data)
        except zlib.error:
            return zlib.decompress(data, -zlib.MAX_WBITS)
    return data


def _boundary(content_type: str) -> bytes:
    for piece in content_type.split(";"):
        name, _, value = piece.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip().strip('"').encode()
    raise ValueError(f"no boundary in {content_type!r}")


def _header_block(block: bytes) -> MutableMapping[str, str]:
    headers: MutableMapping[str, str] = case_insensitive_dict()
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return headers


def http_parts(
    content_type: str, data: bytes
) -> list[tuple[int, str, MutableMapping[str, str], bytes]]:
    """The application/http answers inside a multipart/mixed body (nested changesets
    included): (status, reason, headers, body) each, in order."""
    if not content_type.lower().startswith("multipart/mixed"):
        raise ValueError(f"not a multipart/mixed answer: {content_type!r}")
    out: list[tuple[int, str, MutableMapping[str, str], bytes]] = []
    for chunk in data.split(b"--" + _boundary(content_type))[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, rest = chunk.lstrip(CRLF).partition(CRLF + CRLF)
        inner_type = _header_block(head).get("Content-Type", "")
        if inner_type.lower().startswith("multipart/mixed"):
            out.extend(http_parts(inner_type, rest))
        elif inner_type.lower().startswith("application/http"):
            http_head, _, body = rest.partition(CRLF + CRLF)
            status_line, _, block = http_head.partition(CRLF)
            _version, status, reason = [*status_line.decode("latin-1").split(" ", 2), ""][:3]
            out.append((int(status), reason, _header_block(block), body.rstrip(CRLF)))
    return out


def request_head(
    method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request line and headers, refusing anything that would split them."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
    lines.extend(f"{name}: {value}" for name, value in headers.items() if value is not None)
    if "Content-Length" not in headers and (body or method in BODY_METHODS):
        lines.append(f"Content-Length: {len(body or b'')}")
    text = "\r\n".join(lines)
    # Each piece must be one line: no CR, LF or NUL inside a name, a value or the target.
    breaks = len(lines) - 1
    if text.count("\n") != breaks or text.count("\r") != breaks or "\x00" in text:
        raise ValueError("a request header or the URL holds a line break or NUL")
    if _BAD_TARGET.search(target) or _BAD_TARGET.search(method):
        raise ValueError("the request URL or method holds a space or control character")
    return (text + "\r\n\r\n").encode("latin-1")


def read_status_line(reader: Any) -> tuple[int, str, str]:
    """Status code, reason and HTTP version of the answer's first line."""
    line = reader.readline(MAX_LINE + 1)
    if not line:
        raise http.client.RemoteDisconnected("the server closed the connection without answering")
    if len(line) > MAX_LINE:
        raise ProtocolError("status line too long")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"bad status line {line[:80]!r}")
    return int(code), reason, version


def read_headers(reader: Any) -> MutableMapping[str, str]:
    """Header lines up to the empty one; repeated names joined with ", "."""
    headers: MutableMapping[str, str] = case_insensitive_dict()
    for _ in range(MAX_HEADERS + 1):
        line = reader.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise ProtocolError("the answer's headers stopped short")
        if len(line) > MAX_LINE:
            raise ProtocolError("header line too long")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"bad header line {line[:80]!r}")
        value = value.strip()
        known = headers.get(name)
        headers[name] = value if known is None else f"{known}, {value}"  # as requests joins them
    raise ProtocolError(f"more than {MAX_HEADERS} headers")


def read_chunked(reader: Any) -> bytes:
    """A chunked body, then its trailers (read and dropped)."""
    chunks = []
    while True:
        line = reader.readline(MAX_LINE + 1)
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
            raise ProtocolError(f"bad chunk size {line[:40]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        chunk = reader.read(size)
        if len(chunk) != size or reader.read(2) != b"\r\n":
            raise ProtocolError("chunked answer stopped short")
        chunks.append(chunk)
    read_headers(reader)  # trailers, if any, up to the closing empty line
    return b"".join(chunks)

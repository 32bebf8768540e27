"""Text fit for a log line, an error body or a stored row: nobody can forge or mine it.

- ``quoted(value)``: a value that came from a request (alert fields, ids, parameters, claim
  values). Control, format and separator characters become escapes (``\\r``, ``\\n``,
  ``\\x1b``, ``\\u2028``), a backslash is doubled so that no escape can be faked, and the
  length is bounded. A CR/LF in an ``alertId`` therefore can never start a new log line.
- ``url_for_log(url)``: a URL without its user info, query string and fragment (SAS
  ``sig=``, ``se=``... live in the query).
- ``redacted(text)``: any other text that may quote one of those (exception messages of
  the storage SDKs, requests and urllib): query strings are cut, and account keys, SAS
  signatures, shared access signatures and bearer tokens are replaced by ``<redacted>``.
- ``get_logger(name)``: the logger every module of ``shared`` uses. Its filter passes every
  argument of every record (and the message when it has none) through ``redacted``, and
  turns a traceback into one escaped, redacted line, so a call site cannot forget.

docs/security.md ("Logging") states the rules these implement.
"""

from __future__ import annotations

import logging
import re
import traceback
import unicodedata
from urllib.parse import urlsplit, urlunsplit

DEFAULT_LIMIT = 200
REDACTED = "<redacted>"
_SHORT_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\\": "\\\\"}
# Cc control, Cf format (bidi overrides, zero-width), Zl/Zp line and paragraph separators,
# Cs lone surrogates, Co private use, Cn unassigned: none is shown as itself.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_PLAIN = re.compile(r"[ -\[\]-~]*")  # printable ASCII without the backslash: nothing to do


def _escape(char: str) -> str:
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def quoted(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as one escaped line of at most about ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if not _PLAIN.fullmatch(text):
        text = "".join(_escape(c) for c in text)
    return text + "...[cut]" if cut else text


def url_for_log(url: str) -> str:
    """Scheme, host, port and path only: no user info, query string or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return REDACTED
    return quoted(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_SECRETS = re.compile(
    r"(?i)\b(AccountKey|SharedAccessSignature|SharedAccessKey|sig|signature|"
    r"client_secret|password|access_token|refresh_token|code)=[^;&\s'\"]*"
)
# A query string anywhere, also after a bare path ("Max retries exceeded with url: /a?sig=").
_QUERY = re.compile(r"\?[A-Za-z0-9_.~%-]+=[^\s'\"<>)]*")
_BEARER = re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def _url_match(match: re.Match[str]) -> str:
    url = match.group(0)
    parts = urlsplit(url)
    if not parts.query and not parts.fragment and "@" not in parts.netloc:
        return url
    try:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return REDACTED
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redacted(text: object, limit: int = 2000) -> str:
    """``text`` without URL query strings, keys, signatures or tokens, escaped and bounded."""
    value = _URL.sub(_url_match, text if isinstance(text, str) else str(text))
    value = _QUERY.sub(f"?{REDACTED}", value)
    value = _SECRETS.sub(lambda m: f"{m.group(1)}={REDACTED}", value)
    value = _BEARER.sub(f"Bearer {REDACTED}", value)
    value = _JWT.sub(REDACTED, value)
    return quoted(value, limit)


ARG_LIMIT = 500
TRACEBACK_LIMIT = 8000
_PLAIN_ARGS = (int, float, type(None))


def _safe_arg(value: object) -> object:
    return value if isinstance(value, _PLAIN_ARGS) else redacted(value, ARG_LIMIT)


class EscapingFilter(logging.Filter):
    """Escapes and redacts what a record quotes; see the module docstring."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not args:  # the message is the whole text (a library's prebuilt string, say)
            record.msg = redacted(record.msg, TRACEBACK_LIMIT)
        elif isinstance(args, tuple):
            record.args = tuple(_safe_arg(a) for a in args)
        else:
            record.args = {k: _safe_arg(v) for k, v in args.items()}
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.exc_info = None  # handlers that read it would print it unescaped
            record.exc_text = redacted(text, TRACEBACK_LIMIT)
        return True


_FILTER = EscapingFilter()


# Libraries whose debug logging quotes request URLs (urllib3's connection pool, azure-core's
# network trace policy when an SDK client has logging_enable): their loggers get the filter
# too, so turning their logging on in production cannot leak a SAS signature.
THIRD_PARTY = ("azure", "urllib3", "requests", "msal")
# Loggers that quote URLs or headers, named in advance: some are made only when a client is
# (azure-core's HttpLoggingPolicy), after the imports that protect_libraries sees.
URL_LOGGERS = (
    "urllib3.connectionpool",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.core.pipeline.policies._universal",
)


def _protect(logger: logging.Logger) -> None:
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def protect_libraries() -> None:
    """Add the filter to every library logger that exists now (loggers are made on import)."""
    for name in URL_LOGGERS:
        _protect(logging.getLogger(name))
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.partition(".")[0] in THIRD_PARTY:
            _protect(logger)


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the escaping filter; library loggers imported so far
    get it as well (each module of ``shared`` calls this after its imports)."""
    logger = logging.getLogger(name)
    _protect(logger)
    protect_libraries()
    return logger

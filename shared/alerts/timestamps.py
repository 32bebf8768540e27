"""One timestamp format for everything the normalizer emits.

Output: UTC, always with microseconds and a `Z`, e.g. `2021-10-26T12:34:56.123456Z`.
Fixed width, so string order is time order (the work item logic orders events by them).

Input formats seen in Azure Monitor payloads, all accepted:
- ISO 8601 with or without fractional seconds, 7 digits from .NET included (Python 3.11's
  `fromisoformat` stops at 6: extra digits are truncated, not rounded), with `Z`, an
  offset (`+00:00`, `+0000`, `+00`) or none (taken as UTC);
- US-style `3/22/2019 1:36:33 PM` (log alerts V1 `SearchIntervalStartTimeUtc`), UTC;
- RFC 1123 `Wed, 21 Aug 2019 16:17:47 GMT` (autoscale `lastScaleActionTime`).
Anything else, or an impossible date, gives None: never an exception.

Accepted range: ``EARLIEST`` (1970-01-01T00:00:00Z) to ``LATEST`` (9999-12-31T23:59:59.999999Z),
so every stored time has a 4-digit year, a non-negative epoch offset and one meaning in
every index. A time outside it is treated like an unreadable one, except the alert's own
``firedDateTime`` and ``resolvedDateTime``: ``essential_time`` refuses those with a 400
naming the field (Azure Monitor never sends such an alert).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from shared.alerts.errors import INVALID_FIELD, SchemaError

_ISO = re.compile(
    r"\s*(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?\s*\Z"
)
_US = re.compile(
    r"\s*(\d{1,2})/(\d{1,2})/(\d{4}),? (\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.(\d+))?"
    r"\s*([AaPp][Mm])?\s*(?:Z|UTC|GMT)?\s*\Z"
)
_RFC1123 = re.compile(
    r"\s*(?:[A-Za-z]{3},\s*)?(\d{1,2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2})(?::(\d{2}))?"
    r"\s*(GMT|UTC|Z|[+-]\d{4})?\s*\Z"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_FORMAT = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"
_UTC_SUFFIXES = frozenset((None, "Z", "z", "UTC", "GMT", "+00:00", "+0000", "+00", "-00:00"))


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
_EPOCH = EARLIEST


def format_timestamp(dt: datetime) -> str:
    """`dt` in the output format; a naive datetime is taken as UTC.

    The one formatter of every stored time (``format_micros`` too): fixed width, 4-digit
    year, so string order is time order."""
    if dt.tzinfo is not None and dt.tzinfo is not UTC and dt.utcoffset():
        dt = dt.astimezone(UTC)
    # %-formatting of the fields: about half the cost of isoformat(timespec=...)
    return _FORMAT % (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond)


def format_micros(micros: int) -> str:
    """Microseconds since the epoch in the output format (exact: no float on the way)."""
    return format_timestamp(_EPOCH + timedelta(microseconds=micros))


def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime from any of the accepted formats, else None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    s = value
    try:
        m = _ISO.match(s)
        if m is not None:
            y, mo, d, h, mi, sec, frac, zone = m.groups()
            dt = datetime(
                int(y),
                int(mo),
                int(d),
                int(h),
                int(mi),
                int(sec or 0),
                int(frac[:6].ljust(6, "0")) if frac else 0,
                tzinfo=UTC,
            )
            if zone in _UTC_SUFFIXES:
                return dt
            return dt - _offset(zone)
        m = _US.match(s)
        if m is not None:
            mo, d, y, h, mi, sec, frac, ampm = m.groups()
            hour = int(h)
            if ampm is not None:
                if not 1 <= hour <= 12:
                    return None
                hour = hour % 12 + (12 if ampm in ("PM", "pm", "Pm", "pM") else 0)
            return datetime(
                int(y),
                int(mo),
                int(d),
                hour,
                int(mi),
                int(sec or 0),
                int(frac[:6].ljust(6, "0")) if frac else 0,
                tzinfo=UTC,
            )
        m = _RFC1123.match(s)
        if m is not None:
            d, mon, y, h, mi, sec, zone = m.groups()
            month = _MONTHS.get(mon.lower())
            if month is None:
                return None
            dt = datetime(int(y), month, int(d), int(h), int(mi), int(sec or 0), tzinfo=UTC)
            if zone in _UTC_SUFFIXES:
                return dt
            return dt - _offset(zone)
    except (ValueError, OverflowError):  # impossible dates, offsets past year 1 or 9999
        return None
    return None


def _offset(zone: str) -> timedelta:
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(zone)
    return sign * timedelta(hours=hours, minutes=minutes)


# The shape Azure sends nearly always, fields range-checked by the pattern itself; days
# 29-31 take the general path, where datetime knows the month lengths. ASCII digits only:
# this path copies the text as sent, and other digits must come out canonical too.
_CANONICAL = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d{1,9})?(?:Z|\+00:00)\Z",
    re.ASCII,
)


def timestamp(value: object) -> str | None:
    """`value` as an output timestamp, or None when it is not a recognizable time in range."""
    if value is None:
        return None
    if isinstance(value, str):
        m = _CANONICAL.match(value)
        if m is not None and value[:4] >= "1970":
            frac = m.group(1)
            if frac is None:
                return value[:19] + ".000000Z"
            if len(frac) >= 7:  # "." and 6+ digits: .NET's 7 digits truncated, not rounded
                return value[:26] + "Z"
            return value[:19] + (frac + "00000")[:7] + "Z"
    dt = parse_timestamp(value)
    return None if dt is None or not EARLIEST <= dt <= LATEST else format_timestamp(dt)


def essential_time(value: object, field: str) -> str | None:
    """``timestamp(value)`` for the alert's own times; SchemaError (400) when the value is a
    time outside the accepted range, naming ``field``. Unreadable values stay tolerated."""
    formatted = timestamp(value)
    if formatted is None and parse_timestamp(value) is not None:
        raise SchemaError(
            INVALID_FIELD,
            f"{field} must be between {format_timestamp(EARLIEST)} and {format_timestamp(LATEST)}.",
            field,
        )
    return formatted

"""shared/log_text.py: what a log line, an error body or a stored row may quote (issue 14)."""

from __future__ import annotations

import importlib
import logging
import pkgutil

import pytest

import shared
from shared.log_text import EscapingFilter, get_logger, quoted, redacted, url_for_log


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain /subscriptions/x", "plain /subscriptions/x"),
        ("a\r\nERROR forged", "a\\r\\nERROR forged"),
        ("tab\there", "tab\\there"),
        ("back\\slash", "back\\\\slash"),  # so "\\n" in a value cannot pass for an escape
        ("\x1b[2K\x00\x7f\x85", "\\x1b[2K\\x00\\x7f\\x85"),
        ("\u2028\u2029\u202e", "\\u2028\\u2029\\u202e"),
        ("lone \ud800", "lone \\ud800"),
        (
            "caf\u00e9 \u6f22\u5b57 \U0001f600",
            "caf\u00e9 \u6f22\u5b57 \U0001f600",
        ),  # printable stays
    ],
)
def test_quoted_escapes_what_could_break_a_line(value: str, shown: str) -> None:
    assert quoted(value) == shown


def test_quoted_is_bounded() -> None:
    text = quoted("x" * 10_000, 100)
    assert text == "x" * 100 + "...[cut]"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET https://a.blob.core.windows.net/c/b?sv=2024&sig=AbC%2Bdef%3D failed", "AbC%2Bdef"),
        ("Max retries exceeded with url: /acct/q/messages?se=1&sig=SECRETSIG (Caused", "SECRETSIG"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=S3CR3T==;", "S3CR3T"),
        ("BlobEndpoint=x;SharedAccessSignature=sv=1&sig=SIGSIG", "SIGSIG"),
        ("'Authorization': 'Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl'", "c2lnbmF0dXJl"),
        ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2ln in a message", "c2lnbmF0"),
        ("https://user:pa55word@host/path", "pa55word"),
    ],
)
def test_redacted_removes_secrets_and_query_strings(text: str, secret: str) -> None:
    assert secret not in redacted(text)
    assert "<redacted>" in redacted(text) or "pa55word" not in redacted(text)


def test_url_for_log_keeps_host_and_path_only() -> None:
    assert url_for_log("https://u:p@login.example:8443/t/keys?sig=x#f") == (
        "https://login.example:8443/t/keys"
    )


def test_the_filter_escapes_arguments_messages_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = get_logger("shared.test_log_text")
    caplog.set_level(logging.DEBUG, logger="shared.test_log_text")
    log.info("alert %s queued (%d)", "id\r\nERROR forged", 7)
    log.info("prebuilt ?sig=abc\nsecond line")
    try:
        raise ValueError("https://x/y?sig=TRACEBACKSIG\r\nERROR forged")
    except ValueError:
        log.exception("failed for %s", "a\nb")
    first, second, third = caplog.records[-3:]
    assert first.getMessage() == "alert id\\r\\nERROR forged queued (7)"
    assert second.getMessage() == "prebuilt ?<redacted>\\nsecond line"
    assert third.exc_info is None
    assert third.exc_text is not None
    assert "TRACEBACKSIG" not in third.exc_text
    assert "\n" not in third.exc_text
    assert "\n" not in third.getMessage()
    for line in caplog.text.splitlines():
        assert not line.startswith("ERROR forged")


def test_every_logger_of_the_app_escapes() -> None:
    """A module of shared/ that logs through logging.getLogger would bypass the filter."""
    modules = {m.name for m in pkgutil.walk_packages(shared.__path__, "shared.")}
    for name in modules:
        importlib.import_module(name)
    ours = {
        name: logger
        for name, logger in logging.root.manager.loggerDict.items()
        if name in modules and isinstance(logger, logging.Logger)
    }
    assert "shared.store.groups" in ours
    assert "shared.ingest" in ours
    for name, logger in ours.items():
        assert any(isinstance(f, EscapingFilter) for f in logger.filters), name
    for name in ("urllib3.connectionpool", "azure.core.pipeline.policies.http_logging_policy"):
        assert any(isinstance(f, EscapingFilter) for f in logging.getLogger(name).filters), name

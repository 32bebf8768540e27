"""The board in a real browser: Debian's Chromium, driven by Playwright, against the app over
real HTTP (tests/local_host.py) with Azurite behind it (fixtures: tests/board_browser.py).

Screenshots for the README: BOARD_SCREENSHOTS=docs .venv/bin/python -m pytest
tests/test_board_browser.py -k screenshots (they are always taken, and checked, in tmp_path).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.storage.blob import BlobServiceClient
from playwright.sync_api import Page, expect

from shared import alert_queue, processor
from tests.alert_factory import fired, redelivered, resolved
from tests.board_browser import (
    READ,
    Board,
    axe_violations,
    board,
    chromium,
    ran,
    save_screenshot,
)

__all__ = ["board", "chromium"]

TIMEOUT = 15_000


def rows(page: Page) -> list[str]:
    page.wait_for_selector("table.list-table tbody tr")
    return page.locator("table.list-table tbody tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-id'))"
    )


def open_item(page: Page, title: str) -> None:
    page.get_by_role("link", name=title, exact=True).first.click()
    expect(page.locator("#detail-title")).to_have_text(title, timeout=TIMEOUT)


def test_list_takes_its_filters_from_the_url(board: Board) -> None:
    severities = ["Sev0", "Sev1", "Sev2", "Sev3", "Sev1", "Sev4"]
    ids = board.api.alerts(
        *(
            fired(f"f{n}", n, severity=sev, rule=f"Rule {sev} {n}")
            for n, sev in enumerate(severities)
        )
    )
    page = board.page(path="/board/?severity=Sev0,Sev1")
    expect(page.locator("table.list-table tbody tr[data-id]")).to_have_count(3, timeout=TIMEOUT)
    # Newest fired first, Sev0 and Sev1 only.
    assert rows(page) == [ids[4], ids[1], ids[0]]
    expect(page.locator("#f-severity-Sev0")).to_be_checked()
    expect(page.locator("#f-severity-Sev1")).to_be_checked()
    expect(page.locator("#f-severity-Sev2")).not_to_be_checked()
    counts = page.locator(".summary").inner_text()
    assert re.search(r"Sev1 Error\s*2", counts), counts
    assert re.search(r"New\s*3", counts), counts
    # Changing a filter puts it in the URL (a link to share) and lists accordingly.
    page.locator("#f-severity-Sev0").uncheck()
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("table.list-table tbody tr[data-id]")).to_have_count(2, timeout=TIMEOUT)
    assert parse_qs(urlsplit(page.url).query)["severity"] == ["Sev1"]
    # A shared link with a rule filter.
    page.goto(f"{board.url}/board/?rule={'Rule Sev3 3'.replace(' ', '%20')}")
    expect(page.locator("table.list-table tbody tr[data-id]")).to_have_count(1, timeout=TIMEOUT)
    assert rows(page) == [ids[3]]
    expect(page.locator("#f-rule")).to_have_value("Rule Sev3 3")
    assert ran(page) == {"pwned": [], "csp": []}


def test_paging_fetches_one_page_at_a_time(board: Board) -> None:
    ids = board.api.alerts(*(fired(f"p{n}", n / 10) for n in range(57)))
    newest_first = list(reversed(ids))
    page = board.page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/workitems" in r.url else None)
    expect(page.locator("table.list-table tbody tr[data-id]")).to_have_count(50, timeout=TIMEOUT)
    assert rows(page) == newest_first[:50]
    page.get_by_role("button", name="Older →").click()
    expect(page.locator("table.list-table tbody tr[data-id]")).to_have_count(7, timeout=TIMEOUT)
    assert rows(page) == newest_first[50:]
    expect(page.get_by_role("button", name="Older →")).to_be_disabled()
    assert all("top=50" in url for url in requests), requests
    assert any("continuationToken=" in url for url in requests)
    page.get_by_role("button", name="← Newer").click()
    expect(page.locator("table.list-table tbody tr[data-id]")).to_have_count(50, timeout=TIMEOUT)
    assert rows(page)[0] == newest_first[0]


def test_refresh_keeps_selection_and_scroll(board: Board) -> None:
    ids = board.api.alerts(*(fired(f"r{n}", n) for n in range(30)))
    page = board.page(height=600)
    rows(page)
    target = ids[5]
    page.locator(f"a[data-id='{target}']").click()
    expect(page.locator("#detail-title")).to_be_visible(timeout=TIMEOUT)
    page.evaluate("window.scrollTo(0, 700)")
    before = page.evaluate("window.scrollY")
    assert before > 0
    newer = board.api.alerts(fired("r-new", 40))[0]
    page.evaluate("window.dispatchEvent(new Event('focus'))")  # the tab regains focus
    expect(page.locator(f"tr[data-id='{newer}']")).to_have_count(1, timeout=TIMEOUT)
    expect(page.locator(f"tr[data-id='{target}']")).to_have_attribute("aria-current", "true")
    assert page.evaluate("window.scrollY") == before
    assert parse_qs(urlsplit(page.url).query)["item"] == [target]


def timeline_ids(page: Page) -> list[str]:
    return page.locator("ol.timeline > li").evaluate_all(
        "items => items.map(li => li.getAttribute('data-id'))"
    )


def test_timeline_shows_alert_events_and_peoples_changes(board: Board) -> None:
    (item_id,) = board.api.alerts(fired("t1", 0), resolved("t1", 0, 5))
    etag = board.api.item(item_id).etag
    board.api.patch(item_id, {"note": "Looked at the disk graphs"}, etag, user=True)
    # The paged detail the board keys on: the latest page, newest first, and no older page.
    detail = board.api.item(item_id).body
    history = detail["history"]
    assert detail["historyContinuationToken"] is None
    assert [(h["source"], h["effect"]) for h in history] == [
        ("manual", "manual"),
        ("alert", "resolved"),
        ("alert", "created"),
    ]
    page = board.page(path=f"/board/?item={item_id}")
    timeline = page.locator("ol.timeline > li")
    expect(timeline).to_have_count(3, timeout=TIMEOUT)
    # Newest first, in the API's order: the note, then Resolved, then Fired, times as sent.
    assert timeline_ids(page) == [h["id"] for h in history]
    first = timeline.nth(0)
    expect(first).to_have_class(re.compile("person"))
    expect(first.locator("strong")).to_have_text("ada@contoso.example")
    expect(first.locator("blockquote")).to_have_text("Looked at the disk graphs")
    expect(timeline.nth(1)).to_contain_text("Resolved")
    expect(timeline.nth(2)).to_contain_text("Fired")
    for n in (1, 2):
        assert timeline.nth(n).locator(".when").inner_text() == history[n]["time"]
    assert history[2]["time"] < history[1]["time"]
    # A raw payload to show on each alert event, none on the person's change.
    payload = "button[data-action='payload']"
    expect(first.locator(payload)).to_have_count(0)
    for n in (1, 2):
        expect(timeline.nth(n).locator(payload)).to_have_text("Show raw payload")
    expect(page.locator(f"#detail {payload}")).to_have_count(2)
    # All of it is on the page: no button offers older events.
    expect(page.get_by_role("button", name="Show older events")).to_have_count(0)


def test_timeline_shows_how_a_change_reached_the_azure_alert(board: Board) -> None:
    (item_id,) = board.api.alerts(fired("t-sync", 0))
    alert = board.api.item(item_id).body["alertIds"][0]
    reason = (
        "could not set the Azure alert to Acknowledged: the identity lacks permission "
        "(Microsoft.AlertsManagement/alerts/changestate/action) (AuthorizationFailed: no)"
    )
    # What sync_alert_state records (tests/test_alert_outbox.py drives it end to end).
    now = int(time.time() * 1_000_000)
    assert board.api.store.add_sync_entry(item_id, 2, "failed", "Acknowledged", alert, reason, now)
    entry = board.api.item(item_id).body["history"][0]
    assert (entry["source"], entry["effect"]) == ("sync", "sync-failed")
    page = board.page(path=f"/board/?item={item_id}")
    first = page.locator("ol.timeline > li").first
    expect(first).to_have_attribute("data-id", entry["id"], timeout=TIMEOUT)
    expect(first).to_have_class(re.compile("sync"))
    expect(first.locator("strong")).to_have_text("Azure alert sync")
    expect(first).to_contain_text("the identity lacks permission")
    expect(first.locator("button[data-action='payload']")).to_have_count(0)


def test_show_older_events_pages_back_until_the_oldest(board: Board) -> None:
    board.api.configure(CORRELATION_MODE="rule")  # one item for all the rule's alerts
    rule = {"rule": "Disk queue long", "rule_id": "/subscriptions/s/rules/disk-queue"}
    (item_id,) = board.api.alerts(*(fired(f"h{n}", n * 5, **rule) for n in range(107)))
    everything = board.api.get(
        f"/api/workitems/{item_id}/history", query={"top": 200}, role=READ
    ).body
    assert everything["continuationToken"] is None
    expected = [h["id"] for h in everything["value"]]
    assert len(expected) == len(set(expected)) == 107
    page = board.page(READ, path=f"/board/?item={item_id}")
    pages: list[dict[str, Any]] = []
    page.on(
        "response",
        lambda r: pages.append({"url": r.url, "body": r.json()}) if "/history?" in r.url else None,
    )
    timeline = page.locator("ol.timeline > li")
    expect(timeline).to_have_count(50, timeout=TIMEOUT)
    assert timeline_ids(page) == expected[:50]
    older = page.get_by_role("button", name="Show older events")
    older.dblclick()  # an impatient double click still asks for the page once
    expect(timeline).to_have_count(100, timeout=TIMEOUT)
    expect(page.locator(f"li[data-id='{expected[50]}']")).to_be_focused()
    older.click()
    expect(timeline).to_have_count(107, timeout=TIMEOUT)
    expect(older).to_have_count(0)  # the last page's token was null
    # Every entry once, newest first, as the API has them.
    assert timeline_ids(page) == expected
    times = page.locator("ol.timeline > li .when").all_inner_texts()
    assert times == sorted(times, reverse=True)
    # Two requests, each with the token the answer before gave, until the token was null.
    assert len(pages) == 2, [p["url"] for p in pages]
    detail_token = board.api.item(item_id).body["historyContinuationToken"]
    queries = [parse_qs(urlsplit(p["url"]).query) for p in pages]
    assert queries[0] == {"top": ["50"], "continuationToken": [detail_token]}
    assert queries[1] == {
        "top": ["50"],
        "continuationToken": [pages[0]["body"]["continuationToken"]],
    }
    assert [len(p["body"]["value"]) for p in pages] == [50, 7]
    assert pages[1]["body"]["continuationToken"] is None


HOSTILE_PAYLOAD: dict[str, Any] = {
    "schemaId": "azureMonitorCommonAlertSchema",
    "data": {
        "essentials": {
            "alertRule": '<img src=x onerror="pwned(1)">',
            "description": "<script>pwned(2)</script></pre><svg onload=pwned(3)>",
        },
        "alertContext": {'<b onmouseover="pwned(4)">': "javascript:pwned(5)", "emoji": "\u26a0"},
    },
}


def test_raw_payload_is_shown_as_text_and_a_missing_one_says_so(board: Board, storage: str) -> None:
    evil = fired("raw-evil", 1, rule=HOSTILE_TITLE, description=HOSTILE_TEXT)
    processor.handle(alert_queue.encode(evil, HOSTILE_PAYLOAD), 1, "raw-evil-message")
    (evil_id,) = board.api.alerts(redelivered(evil))
    # A payload too big for the history entry goes to a claim-check blob; retention deletes
    # it, and then the event has no payload any more.
    big = fired("raw-gone", 2, rule="Payload gone")
    noise = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"noise": os.urandom(60_000).hex()},
    }
    processor.handle(alert_queue.encode(big, noise), 1, "raw-gone-message")
    (gone_id,) = board.api.alerts(redelivered(big))
    gone = board.api.item(gone_id).body
    blob_path = gone["history"][0]["alert"]["payloadBlob"]
    container, name = blob_path.split("/", 1)
    blobs = BlobServiceClient.from_connection_string(storage)
    blobs.get_blob_client(container, name).delete_blob()

    page = board.page(READ, path=f"/board/?item={evil_id}")
    event = page.locator("ol.timeline > li").first
    button = event.locator("button[data-action='payload']")
    expect(button).to_have_text("Show raw payload", timeout=TIMEOUT)
    button.click()
    shown = event.locator("pre.payload")
    expect(shown).to_be_visible(timeout=TIMEOUT)
    expect(button).to_have_attribute("aria-expanded", "true")
    # The JSON as Azure Monitor sent it, as text: nothing in it became an element.
    assert json.loads(shown.inner_text()) == HOSTILE_PAYLOAD
    assert shown.evaluate("pre => pre.children.length") == 0
    shown.hover()
    assert page.locator("#view img, #view script, #view svg, #view b").count() == 0
    assert ran(page) == {"pwned": [], "csp": []}
    assert board.dialogs == []
    page.evaluate("pwned('control')")  # the hook records what does call it
    assert ran(page)["pwned"] == ["control"]
    # The same button hides it again.
    expect(button).to_have_text("Hide raw payload")
    button.click()
    expect(shown).to_have_count(0)
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(button).to_have_text("Show raw payload")

    page.locator(f"a[data-id='{gone_id}']").click()
    expect(page.locator("#detail-title")).to_have_text(gone["title"], timeout=TIMEOUT)
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if "/payload" in r.url else None)
    event = page.locator("ol.timeline > li").first
    event.get_by_role("button", name="Show raw payload").click()
    expect(event.locator(".error")).to_have_text(
        "No payload is kept for this event.", timeout=TIMEOUT
    )
    assert statuses == [404]
    expect(event.locator("pre.payload")).to_have_count(0)


def test_acknowledge_assign_note_resolve(board: Board) -> None:
    (item_id,) = board.api.alerts(fired("w1", 0, severity="Sev1"))
    page = board.page(path=f"/board/?item={item_id}")
    detail = page.locator("#detail")
    detail.get_by_role("button", name="Acknowledge").click()
    expect(detail.locator(".message.ok")).to_contain_text("Acknowledge: done", timeout=TIMEOUT)
    assert board.api.item(item_id).body["state"] == "Acknowledged"

    detail.get_by_role("button", name="Assign to me").click()
    expect(detail.locator(".message.ok")).to_contain_text("Assign to me: done", timeout=TIMEOUT)
    assert board.api.item(item_id).body["assignee"] == "ada@contoso.example"

    detail.get_by_label("Note", exact=True).fill("Disk cleaned up, watching")
    detail.get_by_role("button", name="Add note").click()
    expect(detail.locator(".message.ok")).to_contain_text("Add note: done", timeout=TIMEOUT)
    expect(detail.locator("ol.timeline blockquote").first).to_have_text("Disk cleaned up, watching")

    detail.get_by_role("button", name="Resolve").click()
    expect(detail.locator(".message.ok")).to_contain_text("Resolve: done", timeout=TIMEOUT)
    body = board.api.item(item_id).body
    assert body["state"] == "Resolved"
    assert body["assignee"] == "ada@contoso.example"
    assert any(h.get("note") == "Disk cleaned up, watching" for h in body["history"])
    # The list follows: the item now shows as Resolved where it is listed.
    expect(detail.locator(".badges .state")).to_have_text("Resolved")
    # Resolved allows Close and Reopen only.
    buttons = detail.locator(".actions .buttons button").all_inner_texts()
    assert buttons[:2] == ["Close", "Reopen"]


def test_a_concurrent_change_answers_412_shows_it_and_reapplies(board: Board) -> None:
    (item_id,) = board.api.alerts(fired("c1", 0))
    page = board.page(path=f"/board/?item={item_id}")
    detail = page.locator("#detail")
    expect(detail.get_by_role("button", name="Acknowledge")).to_be_visible(timeout=TIMEOUT)
    # Someone else assigns the item while the page shows the old version.
    other = board.api.patch(item_id, {"assignee": "grace"}, board.api.item(item_id).etag)
    assert other.status == 200
    patches: list[int] = []
    page.on(
        "response",
        lambda r: patches.append(r.status) if r.request.method == "PATCH" else None,
    )
    detail.get_by_role("button", name="Acknowledge").click()
    conflict = detail.locator(".message.conflict")
    expect(conflict).to_contain_text("Someone else changed this item", timeout=TIMEOUT)
    expect(conflict.locator("ul.diff")).to_contain_text("Assignee: none → grace")
    assert patches == [412]
    assert board.api.item(item_id).body["state"] == "New"  # nothing applied
    expect(conflict.get_by_role("button", name='Apply "Acknowledge" again')).to_be_focused()
    conflict.get_by_role("button", name='Apply "Acknowledge" again').click()
    expect(detail.locator(".message.ok")).to_contain_text("Acknowledge: done", timeout=TIMEOUT)
    body = board.api.item(item_id).body
    assert (body["state"], body["assignee"]) == ("Acknowledged", "grace")
    assert patches == [412, 200]


def test_a_transition_no_longer_allowed_shows_the_allowed_ones(board: Board) -> None:
    (item_id,) = board.api.alerts(fired("x1", 0))
    page = board.page(path=f"/board/?item={item_id}")
    detail = page.locator("#detail")
    expect(detail.get_by_role("button", name="Start work")).to_be_visible(timeout=TIMEOUT)
    assert board.api.patch(item_id, {"state": "Closed"}, board.api.item(item_id).etag).status == 200
    detail.get_by_role("button", name="Start work").click()
    conflict = detail.locator(".message.conflict")
    expect(conflict.locator("ul.diff")).to_contain_text("State: New → Closed", timeout=TIMEOUT)
    conflict.get_by_role("button", name='Apply "Start work" again').click()
    error = detail.locator(".message.error")
    expect(error).to_contain_text("not possible from Closed", timeout=TIMEOUT)
    expect(error).to_contain_text("Allowed now: New")
    assert board.api.item(item_id).body["state"] == "Closed"


def test_read_only_user_sees_no_actions(board: Board) -> None:
    (item_id,) = board.api.alerts(fired("ro1", 0))
    page = board.page(READ, path=f"/board/?item={item_id}")
    expect(page.locator("#detail-title")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#who")).to_contain_text("read only")
    expect(page.locator("#detail .actions")).to_have_count(0)
    for name in ("Acknowledge", "Resolve", "Close", "Assign to me", "Add note", "Set priority"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    # The server decides, not the page: the same token cannot change the item.
    token = board.api.token(READ, user=True)
    status = page.evaluate(
        """async ([id, token]) => (await fetch(`/api/workitems/${id}`, {method: 'PATCH',
             headers: {Authorization: `Bearer ${token}`, 'Content-Type': 'application/json',
                       'If-Match': '*'}, body: JSON.stringify({state: 'Closed'})})).status""",
        [item_id, token],
    )
    assert status == 403
    assert board.api.item(item_id).body["state"] == "New"


HOSTILE_TITLE = '<img src=x onerror="pwned(1)">'
HOSTILE_TEXT = '<script>pwned(2)</script><a href="javascript:pwned(3)">click</a>'


def test_hostile_alert_text_is_shown_as_text_and_nothing_runs(board: Board) -> None:
    (item_id,) = board.api.alerts(
        fired(
            "evil",
            0,
            rule=HOSTILE_TITLE,
            description=HOSTILE_TEXT,
            cis=['<svg onload="pwned(4)">'],
            custom={"runbook": "javascript:pwned(5)", '<b onmouseover="pwned(6)">': "x"},
            links={
                "investigation": "javascript:pwned(7)",
                "portal": "data:text/html,<script>pwned(8)</script>",
                "searchResults": ["https://example.invalid/<script>"],
            },
        )
    )
    page = board.page(path=f"/board/?item={item_id}")
    title = board.api.item(item_id).body["title"]
    expect(page.locator("#detail-title")).to_have_text(title, timeout=TIMEOUT)
    assert HOSTILE_TITLE in title
    expect(page.locator("#detail .description")).to_have_text(HOSTILE_TEXT)
    expect(page.locator("#detail")).to_contain_text('<svg onload="pwned(4)">')
    expect(page.locator("#detail")).to_contain_text("javascript:pwned(5)")
    page.locator("#detail").hover()
    for cell in page.locator("#detail dt, #detail dd").all():
        cell.hover()
    # No element came from the data: no img, script, svg or b anywhere in the board.
    assert page.locator("#view img, #view script, #view svg, #view b").count() == 0
    hrefs = page.locator("a[href]").evaluate_all("links => links.map(a => a.href)")
    assert all(h.startswith((board.url, "https://")) for h in hrefs), hrefs
    assert not any("pwned" in h for h in hrefs)
    # The hook works (a call from the test is recorded) and nothing from the page called it.
    assert ran(page) == {"pwned": [], "csp": []}
    assert board.dialogs == []
    page.evaluate("pwned('control')")
    assert ran(page)["pwned"] == ["control"]


def test_only_https_and_own_paths_become_links(board: Board) -> None:
    page = board.page()
    rows_or_empty = page.locator("#status")
    expect(rows_or_empty).not_to_have_text("Loading…", timeout=TIMEOUT)
    verdicts = page.evaluate(
        """async (urls) => {
             const { safeHref } = await import('/board/dom.js');
             return urls.map((u) => safeHref(u));
           }""",
        [
            "javascript:pwned(1)",
            " JaVaScRiPt:pwned(2)",
            "java\tscript:pwned(3)",
            "data:text/html,<script>pwned(4)</script>",
            "vbscript:msgbox(5)",
            "//evil.example/x",
            "/\\evil.example/x",
            "http://portal.azure.com/",
            "file:///etc/passwd",
            "https://portal.azure.com/#resource/subscriptions/x",
            "/board/?item=1",
        ],
    )
    assert verdicts[:9] == [None] * 9
    assert verdicts[9] == "https://portal.azure.com/#resource/subscriptions/x"
    assert verdicts[10] == "/board/?item=1"


def test_csp_and_security_headers_reach_the_browser(board: Board) -> None:
    page = board.page()
    response = page.goto(f"{board.url}/")
    assert response is not None
    assert response.url == f"{board.url}/board/"  # GET / redirects to the board
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "connect-src 'self' https://login.microsoftonline.com;" in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    # The policy is enforced: an inline script is refused and reported.
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'pwned(9)';"
        " document.body.append(s); }"
    )
    page.wait_for_function("window.__cspViolations.length > 0")
    assert ran(page)["pwned"] == []
    assert ran(page)["csp"][0].startswith("script-src")


def test_cmdb_search_and_ci_view(board: Board) -> None:
    ids = board.api.alerts(fired("m1", 0, cis=["db-server-07"]), fired("m2", 1, cis=["web-01"]))
    page = board.page(path="/board/?view=cmdb")
    page.get_by_label("Configuration item").fill("db-server")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="db-server-07").click()
    expect(page.get_by_role("heading", name="db-server-07")).to_be_visible(timeout=TIMEOUT)
    open_table = page.locator("table", has=page.locator("caption", has_text="Open work items"))
    expect(open_table.locator("tbody tr")).to_have_count(1)
    open_table.locator("a").click()
    expect(page.locator("#detail-title")).to_be_visible(timeout=TIMEOUT)
    assert parse_qs(urlsplit(page.url).query)["item"] == [ids[0]]


def test_keyboard_alone_opens_and_acts_on_an_item(board: Board) -> None:
    (item_id,) = board.api.alerts(fired("k1", 0))
    page = board.page()
    rows(page)
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    link = page.locator(f"a[data-id='{item_id}']")
    for _ in range(40):
        page.keyboard.press("Tab")
        if link.evaluate("a => a === document.activeElement"):
            break
    page.keyboard.press("Enter")
    expect(page.locator("#detail-title")).to_be_focused(timeout=TIMEOUT)
    button = page.locator("#detail").get_by_role("button", name="Acknowledge")
    for _ in range(40):
        page.keyboard.press("Tab")
        if button.evaluate("b => b === document.activeElement"):
            break
    page.keyboard.press("Enter")
    expect(page.locator("#detail .message.ok")).to_be_visible(timeout=TIMEOUT)
    assert board.api.item(item_id).body["state"] == "Acknowledged"
    page.keyboard.press("Escape")  # closes the item, back on its row
    expect(link).to_be_focused()
    assert "item" not in parse_qs(urlsplit(page.url).query)


def _views(board: Board) -> tuple[str, str]:
    rules = [
        ("Disk space low", "Free space on C: below 5% for 15 minutes"),
        ("CPU above 90%", "Average CPU above 90% for 5 minutes"),
        ("HTTP 5xx above 2%", "Server errors above 2% of requests for 10 minutes"),
        ("Memory pressure", "Available memory below 500 MB for 10 minutes"),
        ("Heartbeat missing", "No heartbeat from the agent for 5 minutes"),
        ("Queue length above 1000", "Messages waiting in orders-in above 1,000"),
        (
            "Certificate expires soon",
            "The TLS certificate of shop.contoso.example expires in 14 days",
        ),
    ]
    ids = board.api.alerts(
        *(
            fired(
                f"v{n}",
                n,
                severity=f"Sev{n % 5}",
                cis=[f"vm-app-{n % 3:02d}"],
                rule=rule,
                description=text,
            )
            for n, (rule, text) in enumerate(rules)
        )
    )
    item_id = ids[-1]
    etag = board.api.item(item_id).etag
    board.api.patch(
        item_id,
        {"state": "Acknowledged", "assignee": "ada@contoso.example", "note": "Renewal ordered"},
        etag,
        user=True,
    )
    return item_id, ids[0]


def test_main_views_pass_axe_in_light_and_dark(board: Board) -> None:
    item_id, _ = _views(board)
    ci_id = board.api.item(item_id).body["configurationItems"][0]["id"]
    for scheme in ("light", "dark"):
        for path, ready in (
            (f"/board/?item={item_id}", "#detail-title"),
            ("/board/?view=cmdb&q=vm-app", "table.items tbody tr"),
            (f"/board/?view=ci&id={ci_id}", "h2"),
        ):
            page = board.page(path=path, color_scheme=scheme)
            page.wait_for_selector(ready, timeout=TIMEOUT)
            assert axe_violations(page) == [], (scheme, path)
    phone = board.page(path=f"/board/?item={item_id}", width=375, height=740)
    phone.wait_for_selector("#detail-title", timeout=TIMEOUT)
    assert axe_violations(phone) == []
    # At phone width the open item takes the screen, nothing overflows sideways.
    expect(phone.locator(".list")).to_be_hidden()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375


def test_screenshots(board: Board, tmp_path: Path) -> None:
    item_id, _ = _views(board)
    target = Path(os.environ["BOARD_SCREENSHOTS"]) if os.environ.get("BOARD_SCREENSHOTS") else None
    for scheme in ("light", "dark"):
        page = board.page(color_scheme=scheme, height=1000)
        rows(page)
        save_screenshot(page, tmp_path / f"board-list-{scheme}.png", target)
        page.locator(f"a[data-id='{item_id}']").click()
        expect(page.locator("#detail-title")).to_be_visible(timeout=TIMEOUT)
        expect(page.locator("ol.timeline > li").first).to_be_visible()
        save_screenshot(page, tmp_path / f"board-detail-{scheme}.png", target)
    for name in ("list", "detail"):
        light = (tmp_path / f"board-{name}-light.png").read_bytes()
        dark = (tmp_path / f"board-{name}-dark.png").read_bytes()
        assert light[:8] == b"\x89PNG\r\n\x1a\n"
        assert light != dark  # the theme follows the system


def test_sign_in_with_msal_auth_code_and_pkce_in_session_storage(board: Board) -> None:
    """Every page here signs in as in production (tests/board_browser.py, FakeEntra): MSAL.js
    configured from board-config, authorization code with a PKCE challenge the token request
    answers with its verifier, back on the page the person started from, tokens in
    sessionStorage only."""
    (item_id,) = board.api.alerts(fired("s1", 0, severity="Sev1"))
    page = board.page(path="/board/?severity=Sev1")
    expect(page.locator(f"tr[data-id='{item_id}']")).to_have_count(1, timeout=TIMEOUT)
    entra = board.entra
    assert entra is not None
    config = entra.config
    (authorize,) = entra.authorize
    assert authorize["client_id"] == config["clientId"]
    assert authorize["response_type"] == "code"
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["redirect_uri"] == f"{board.url}/board/"
    assert config["scopes"][0] in authorize["scope"].split()
    (token_request,) = entra.token_requests
    assert token_request["grant_type"] == "authorization_code"
    assert token_request["code_verifier"]  # checked against the challenge by FakeEntra
    assert config["authority"] == f"https://login.microsoftonline.com/{config['tenantId']}"
    assert parse_qs(urlsplit(page.url).query) == {"severity": ["Sev1"]}
    keys, local = page.evaluate("[Object.keys(sessionStorage).join(' '), localStorage.length]")
    assert "accesstoken" in keys.lower()
    assert local == 0  # never local storage
    # Reloading uses MSAL's cache: no second trip to the authority.
    page.reload()
    expect(page.locator(f"tr[data-id='{item_id}']")).to_have_count(1, timeout=TIMEOUT)
    assert len(entra.authorize) == 1

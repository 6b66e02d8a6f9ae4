"""A supervisor's open page changes when staff scan a ticket: gunicorn (threaded
workers) with Redis, Debian's Chromium, the scan sent through the JSON API.

Screenshots go to ``test-artifacts/screenshots/`` (and ``$ANTRI_SCREENSHOTS``).
Skipped without /usr/bin/chromium or Redis, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import SERVICES_RUN
from tests.servers import post_json
from tests.test_browser import (
    BOSS,
    CHROMIUM,
    POINT_CODE,
    REPO,
    SHOTS,
    UNDER_CI,
    VENV_BIN,
    LiveServer,
    Problems,
    _app_env,
    _flask,
    _free_port,
    _open,
    _sign_in,
    _slot_window,
    _wait_healthy,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not UNDER_CI,
        reason="Debian's Chromium is not installed at /usr/bin/chromium (make browser)",
    ),
]

STAFF_EMAIL = "gate-live@antri.test"
SCAN_TO_SCREEN = 1.0  # seconds, from sending a scan to its number on the open page
REFRESH_SECONDS = 3  # LIVE_REFRESH_SECONDS of the test server (60 by default)
INSTANCE: dict[str, Path] = {}  # the test server's instance folder, for the database


@pytest.fixture(scope="module")
def live_redis_server(tmp_path_factory, request) -> Iterator[tuple[LiveServer, str, str]]:
    """Antri under gunicorn gthread with Redis, a slot running now at JKT-003, a
    supervisor, and a staff token. Yields (server, staff token, the slot's id)."""
    import redis

    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        if UNDER_CI:
            pytest.fail(f"Redis at {redis_url} is required under CI")
        pytest.skip("Redis is not reachable")
    SERVICES_RUN.add("redis")
    instance = tmp_path_factory.mktemp("antri-live-browser")
    env = _app_env(instance)
    env.update(
        REDIS_URL=redis_url,
        LIVE_CHANNEL=f"antri-test:{uuid.uuid4().hex}",
        LIVE_REFRESH_SECONDS=str(REFRESH_SECONDS),
        # Pages left by a test keep their streams until a heartbeat finds them gone;
        # the cap per account is tested in test_live.py.
        LIVE_MAX_STREAMS_PER_USER="50",
        # Scans at the slot's start are under test, not the arrival waves' window.
        ARRIVAL_WAVE_MINUTES="0",
    )
    INSTANCE["path"] = instance
    _flask(env, "db", "upgrade")
    _flask(env, "seed-demo", "--days", "1")
    start, end, must_generate = _slot_window()
    if must_generate:
        _flask(
            env, "slots", "generate", POINT_CODE, "--date", start.date().isoformat(),
            "--start", f"{start:%H:%M}", "--end", f"{end:%H:%M}",
            "--length", str(int((end - start).total_seconds() // 60)), "--capacity", "5",
        )  # fmt: skip
    _flask(env, "users", "create", STAFF_EMAIL, "--role", "staff", "--point", POINT_CODE,
           "--password", "gate-pass-2")  # fmt: skip
    _flask(env, "users", "create", BOSS[0], "--role", "supervisor", "--password", BOSS[1])
    token = _flask(env, "users", "token", STAFF_EMAIL).strip().splitlines()[-1]

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = instance / "gunicorn.log"
    with log.open("w") as log_handle:
        server = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                *("--worker-class", "gthread", "-w", "2", "--threads", "8"),
                *("-b", f"127.0.0.1:{port}", "--graceful-timeout", "2"),
                "--no-control-socket",
                "app:create_app()",
            ],
            cwd=REPO,
            env=env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(url, server, log)
        status, slots = _get_json(
            f"{url}/api/v1/market-points/{POINT_CODE}/slots?date={start.date()}"
        )
        label = f"{start:%H:%M}"
        [slot] = [
            s for s in slots if datetime.fromisoformat(s["starts_at"]).strftime("%H:%M") == label
        ]
        yield (
            LiveServer(url, start.date().isoformat(), f"{start:%H:%M}–{end:%H:%M}"),
            token,
            slot["id"],
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _get_json(url: str):
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310
        return answer.status, json.loads(answer.read())


def _book(server: LiveServer, slot_id: int, serial: int) -> str:
    # Kec. Senen (317104), a woman born 05-05-1990, distinct serials.
    status, body = post_json(
        f"{server.url}/api/v1/bookings",
        {
            "slot_id": slot_id,
            "name": "Dewi Lestari",
            "nik": f"317104450590{serial:04d}",
            "phone": f"08123456{serial:04d}",
        },
    )
    assert status == 201, body
    return body["code"]


def test_a_scan_changes_the_open_supervisor_page(browser, live_redis_server):
    server, token, slot_id = live_redis_server
    SHOTS.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []
    problems = Problems()
    codes = [_book(server, slot_id, serial) for serial in (11, 12)]

    desk = _open(browser, server, viewport={"width": 1024, "height": 768}, has_touch=True)
    page = problems.watch(desk.new_page(), "supervisor")
    page.goto("/login")
    _sign_in(page, *BOSS)
    expect(page).to_have_url(f"{server.url}/supervisor")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    row = page.locator(f'tr[data-point="{POINT_CODE}"]')
    inside = row.locator("[data-inside]")
    expect(inside).to_have_attribute("data-inside", "0")
    checked_in = row.locator('[data-field="checked_in_today"]')
    before = int(checked_in.inner_text())

    auth = {"Authorization": f"Bearer {token}"}
    delays = []
    for count, code in enumerate(codes, start=1):
        sent = time.monotonic()
        status, answer = post_json(f"{server.url}/api/v1/checkin", {"code": code}, auth)
        assert status == 200 and answer["result"] == "admitted", answer
        expect(inside).to_have_attribute("data-inside", str(count), timeout=5000)
        delays.append(time.monotonic() - sent)
    print(f"scan to screen: {', '.join(f'{d * 1000:.0f} ms' for d in delays)}")
    assert max(delays) < SCAN_TO_SCREEN, delays
    expect(inside).to_have_text(re.compile(r"^2 / \d+$"))
    expect(checked_in).to_have_text(str(before + 2))
    row.scroll_into_view_if_needed()
    page.wait_for_timeout(1300)  # let the highlight fade before the picture
    page.screenshot(path=str(SHOTS / "08-supervisor-live.png"), full_page=False)
    taken.append(SHOTS / "08-supervisor-live.png")

    # The point's own page follows the same feed.
    row.get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Pasar Senen")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    slot_row = page.locator(f'tr[data-slot-id="{slot_id}"]')
    expect(slot_row.locator('[data-field="checked_in"]')).to_have_text("2")
    status, answer = post_json(f"{server.url}/api/v1/checkout", {"code": codes[0]}, auth)
    assert answer["result"] == "checked_out", answer
    expect(page.locator("[data-inside]")).to_have_attribute("data-inside", "1")
    page.wait_for_timeout(1300)
    page.screenshot(path=str(SHOTS / "09-point-detail.png"), full_page=True)
    taken.append(SHOTS / "09-point-detail.png")
    desk.close()
    assert not problems.seen, "the browser saw problems:\n" + "\n".join(problems.seen)

    refresh = os.environ.get("ANTRI_SCREENSHOTS")
    if refresh:
        Path(refresh).mkdir(parents=True, exist_ok=True)
        for path in taken:
            shutil.copy2(path, Path(refresh) / path.name)


def _sql(statement: str, *args) -> None:
    """Change the test server's database behind its back (no event is published)."""
    import sqlite3

    with sqlite3.connect(INSTANCE["path"] / "antri.db", timeout=10) as conn:
        conn.execute(statement, args)


def test_the_point_page_follows_every_change_and_the_clock(browser, live_redis_server):
    server, token, slot_id = live_redis_server
    problems = Problems()
    context = _open(browser, server, viewport={"width": 1024, "height": 768})
    page = problems.watch(context.new_page(), "point")
    page.goto("/login")
    _sign_in(page, *BOSS)
    page.goto(f"/supervisor/points/{POINT_CODE}")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    summary = page.locator("#occupancy tr[data-point-id]")
    slot_row = page.locator(f'tr[data-slot-id="{slot_id}"]')
    booked_today = summary.locator('[data-field="booked_today"]')
    before = int(booked_today.inner_text())
    slot_booked = int(slot_row.locator('[data-field="booked"]').inner_text())

    # A booking for another day changes nothing on today's page (finding 2) ...
    tomorrow = (datetime.fromisoformat(server.day) + timedelta(days=1)).date().isoformat()
    _flask(_app_env(INSTANCE["path"]), "slots", "generate", POINT_CODE, "--date", tomorrow,
           "--start", "08:00", "--end", "08:30", "--length", "30", "--capacity", "5")  # fmt: skip
    _, slots = _get_json(f"{server.url}/api/v1/market-points/{POINT_CODE}/slots?date={tomorrow}")
    _book(server, slots[0]["id"], 31)
    page.wait_for_timeout(1500)
    expect(booked_today).to_have_text(str(before))

    # ... a booking today moves the point's total and its slot row (finding 8).
    code = _book(server, slot_id, 32)
    expect(booked_today).to_have_text(str(before + 1), timeout=SCAN_TO_SCREEN * 1000)
    expect(slot_row.locator('[data-field="booked"]')).to_have_text(str(slot_booked + 1))
    remaining = int(slot_row.locator("td").nth(1).inner_text()) - slot_booked - 1
    expect(slot_row.locator('[data-field="remaining"]')).to_have_text(str(remaining))

    # A visit past the dwell time leaves "inside now" with no event at all (finding 4).
    inside = summary.locator("[data-inside]")
    status, answer = post_json(
        f"{server.url}/api/v1/checkin", {"code": code}, {"Authorization": f"Bearer {token}"}
    )
    assert answer["result"] == "admitted", answer
    expect(slot_row.locator('[data-field="checked_in"]')).not_to_have_text("0")
    expect(inside).not_to_have_attribute("data-inside", "0")
    # Every visit began hours ago: past DWELL_MINUTES, nobody counts as inside.
    _sql(
        "UPDATE booking SET checked_in_at = datetime(checked_in_at, '-3 hours')"
        " WHERE status = 'checked_in'"
    )
    expect(inside).to_have_attribute("data-inside", "0", timeout=(REFRESH_SECONDS + 3) * 1000)

    # The session ends: a clear notice with a link, not "Updating" forever (finding 11).
    context.clear_cookies()
    notice = page.locator("#signed-out")
    expect(notice).to_be_visible(timeout=(REFRESH_SECONDS + 5) * 1000)
    expect(page.locator("#live")).to_have_attribute("data-state", "signed-out")
    expect(notice.get_by_role("link")).to_have_attribute("href", re.compile(r"^/login\?next="))
    context.close()
    problems.seen[:] = [p for p in problems.seen if "401" not in p]
    assert not problems.seen, "the browser saw problems:\n" + "\n".join(problems.seen)


@pytest.mark.parametrize("width", [360, 768])
def test_live_pages_fit_narrow_screens(browser, live_redis_server, width):
    server, _, _ = live_redis_server
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = _open(browser, server, viewport={"width": width, "height": 800}, has_touch=True)
    page = context.new_page()
    page.goto("/login")
    _sign_in(page, *BOSS)
    for path, name in (("/supervisor", "overview"), (f"/supervisor/points/{POINT_CODE}", "point")):
        page.goto(path)
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        row = page.locator(f'#occupancy tr[data-point="{POINT_CODE}"]')
        for field in ("no_show_today", "waiting_today", "booked_today", "checked_in_today"):
            expect(row.locator(f'[data-field="{field}"]')).to_be_visible()
        box = row.locator('[data-field="waiting_today"]').bounding_box()
        assert box is not None and box["x"] + box["width"] <= width
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(SHOTS / f"live-{name}-{width}.png"), full_page=True)
    context.close()

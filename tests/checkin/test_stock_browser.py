"""Stock's surfaces in Debian's Chromium (issue 15): the gate says how many packages to
hand over (online, and offline from its snapshot) on a 360 px phone, and a sold-out
day's market page shows its slots as Habis.

The server is gunicorn on SQLite (migrated, seeded, a slot running now). The stock
row and a booking's packages are written into the database as a booking that
reserved them leaves them (the reservation rules are tested elsewhere).
Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.servers import post_json
from tests.test_browser import (
    CHROMIUM,
    JAKARTA,
    POINT_CODE,
    REPO,
    SHOTS,
    UNDER_CI,
    VENV_BIN,
    _app_env,
    _flask,
    _free_port,
    _no_sideways_scroll,
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

STAFF = ("gate-stock@antri.test", "gate-pass-5")
BOSS = ("boss-stock@antri.test", "boss-pass-5")
PHONE = {"width": 360, "height": 740}
STORE = f"antri-gate:{POINT_CODE}:"


@dataclass(frozen=True)
class StockServer:
    """The running app, its SQLite file, the slot running now and its local date."""

    url: str
    database: Path
    slot_id: int
    day: str


@pytest.fixture(scope="module")
def stock_server(tmp_path_factory) -> Iterator[StockServer]:
    instance = tmp_path_factory.mktemp("antri-stock-browser")
    env = _app_env(instance)
    env["RATELIMIT_ENABLED"] = "false"
    # The handout, not the arrival wave, is under test: everyone may come at the start.
    env["ARRIVAL_WAVE_MINUTES"] = "0"
    _flask(env, "db", "upgrade")
    _flask(env, "seed-demo", "--days", "1")
    start, end, must_generate = _slot_window()
    if must_generate:
        _flask(
            env, "slots", "generate", POINT_CODE, "--date", start.date().isoformat(),
            "--start", f"{start:%H:%M}", "--end", f"{end:%H:%M}",
            "--length", str(int((end - start).total_seconds() // 60)), "--capacity", "20",
        )  # fmt: skip
    _flask(env, "users", "create", STAFF[0], "--role", "staff", "--point", POINT_CODE,
           "--password", STAFF[1])  # fmt: skip
    _flask(env, "users", "create", BOSS[0], "--role", "supervisor", "--password", BOSS[1])
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = instance / "gunicorn.log"
    with log.open("w") as handle:
        server = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-w", "2", "--threads", "4",
             "-b", f"127.0.0.1:{port}", "--no-control-socket", "app:create_app()"],
            cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_healthy(url, server, log)
        database = instance / "antri.db"
        with sqlite3.connect(database) as conn:
            slot_id = conn.execute(
                "SELECT slot.id FROM slot JOIN market_point ON market_point.id ="
                " slot.market_point_id WHERE market_point.code = ? AND starts_at <= ?"
                " ORDER BY starts_at DESC LIMIT 1",
                (POINT_CODE, f"{start.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"),
            ).fetchone()[0]
        yield StockServer(url, database, slot_id, start.astimezone(JAKARTA).date().isoformat())
    finally:
        server.terminate()
        server.wait(timeout=10)


_serial = iter(range(300, 999))


def _book(server: StockServer, packages: int) -> dict:
    """Book the running slot and make the booking hold ``packages`` of today's stock."""
    status, body = post_json(
        f"{server.url}/api/v1/bookings",
        {"slot_id": server.slot_id, "name": "Dewi Lestari",
         "nik": f"3171044505900{next(_serial):03d}", "phone": "0812 3456 7890"},
    )  # fmt: skip
    assert status == 201, body
    # The booking reserved per_booking packages already; move the day's count to match.
    with sqlite3.connect(server.database) as conn:
        conn.execute(
            "UPDATE stock SET reserved = reserved + ? - (SELECT packages FROM booking"
            " WHERE code = ?) WHERE day = ? AND market_point_id ="
            " (SELECT id FROM market_point WHERE code = ?)",
            (packages, body["code"], server.day, POINT_CODE),
        )
        conn.execute("UPDATE booking SET packages = ? WHERE code = ?", (packages, body["code"]))
    return body


def _set_stock(server: StockServer, packages: int, per_booking: int = 2) -> None:
    with sqlite3.connect(server.database) as conn:
        point_id = conn.execute(
            "SELECT id FROM market_point WHERE code = ?", (POINT_CODE,)
        ).fetchone()[0]
        updated = conn.execute(
            "UPDATE stock SET packages = ?, per_booking = ? WHERE market_point_id = ? AND day = ?",
            (packages, per_booking, point_id, server.day),
        ).rowcount
        if not updated:
            conn.execute(
                "INSERT INTO stock (market_point_id, day, packages, per_booking, reserved,"
                " handed_out, updated_at) VALUES (?, ?, ?, ?, 0, 0, ?)",
                (point_id, server.day, packages, per_booking,
                 f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}"),
            )  # fmt: skip


def _stock(server: StockServer) -> tuple[int, int, int]:
    with sqlite3.connect(server.database) as conn:
        return conn.execute(
            "SELECT packages, reserved, handed_out FROM stock WHERE day = ?", (server.day,)
        ).fetchone()


def _gate(page: Page) -> None:
    page.goto("/login")
    _sign_in(page, *STAFF)
    expect(page).to_have_url(re.compile(r"/gate$"))


def _scan(page: Page, text: str) -> None:
    expect(page.locator("#scan")).to_be_focused()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_the_gate_says_how_many_packages_to_hand_over(browser, stock_server):
    _set_stock(stock_server, packages=100)
    online, offline = _book(stock_server, 2), _book(stock_server, 2)
    context = browser.new_context(base_url=stock_server.url, locale="id-ID", viewport=PHONE)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    _gate(page)
    SHOTS.mkdir(parents=True, exist_ok=True)

    _scan(page, online["ticket"])
    result = page.locator("#result")
    expect(result).to_have_attribute("data-result", "admitted")
    handout = result.locator(".handout")
    expect(handout).to_have_text("Serahkan 2 paket")
    expect(handout).to_have_attribute("data-handout", "2")
    expect(handout).to_be_in_viewport()
    box = handout.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert float(handout.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 32
    page.screenshot(path=str(SHOTS / "40-gate-handout-360.png"))
    assert _stock(stock_server) == (100, 4, 2)

    # Offline: the snapshot's packages say it, and the merge hands them out once.
    page.wait_for_function(
        f"() => (JSON.parse(localStorage.getItem('{STORE}snapshot') || 'null') || {{bookings: []}})"
        f".bookings.some((b) => b.code === '{offline['code']}' && b.packages === 2)"
    )
    page.wait_for_timeout(2600)  # the first answer shrinks back from full screen
    context.set_offline(True)
    page.evaluate("window.dispatchEvent(new Event('offline'))")
    _scan(page, offline["ticket"])
    expect(result).to_have_attribute("data-offline", "true")
    expect(result).to_have_attribute("data-result", "admitted")
    expect(handout).to_have_text("Serahkan 2 paket")
    page.screenshot(path=str(SHOTS / "41-gate-handout-offline-360.png"))
    # A refusal right after shows no leftover handout.
    _scan(page, offline["ticket"])
    expect(result).to_have_attribute("data-result", "refused")
    expect(handout).to_be_hidden()
    context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    expect(page.locator("#net-state")).to_be_hidden(timeout=20_000)
    assert _stock(stock_server) == (100, 4, 4)
    _no_sideways_scroll(page, PHONE["width"])
    assert errors == []
    context.close()


def test_a_sold_out_day_shows_habis_on_the_market_page(browser, stock_server):
    # Every package reserved (none at all when this test runs alone): left 0 < 2.
    level = _stock(stock_server)
    _set_stock(stock_server, packages=level[1] if level else 0)
    context = browser.new_context(base_url=stock_server.url, locale="id-ID", viewport=PHONE)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"/points/{POINT_CODE}?date={stock_server.day}")
    expect(page.locator("#sold-out")).to_be_visible()
    expect(page.locator("#sold-out")).to_contain_text("Habis")
    day_link = page.locator(f'nav.days a[data-day="{stock_server.day}"]')
    expect(day_link).to_have_attribute("data-sold-out", "")
    expect(day_link.locator(".n")).to_have_text("Habis")
    slots = page.locator(".card.slot")
    assert slots.count() >= 1
    for index in range(slots.count()):
        expect(slots.nth(index).locator(".pill")).to_have_text("Habis")
        expect(slots.nth(index).get_by_role("link")).to_have_text("Daftar tunggu")
    _no_sideways_scroll(page, PHONE["width"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "42-market-sold-out-360.png"), full_page=True)
    # The booking link leads to the open waiting list.
    slots.first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/slots/\d+/waiting-list$"))
    expect(page.locator("#sold-out")).to_be_visible()
    page.screenshot(path=str(SHOTS / "43-waiting-list-sold-out-360.png"), full_page=True)
    context.close()


def test_supervisors_see_the_stock_column_and_the_alert(browser, stock_server):
    # 9 of 10 reserved, 1 handed out: the 90% alert.
    _set_stock(stock_server, packages=100)
    with sqlite3.connect(stock_server.database) as conn:
        conn.execute(
            "UPDATE stock SET packages = 10, reserved = 9, handed_out = 1, per_booking = 1"
            " WHERE day = ?",
            (stock_server.day,),
        )
    context = browser.new_context(base_url=stock_server.url, locale="id-ID", viewport=PHONE)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/login")
    _sign_in(page, *BOSS)
    page.goto("/supervisor?sort=name")
    row = page.locator(f'tr[data-point="{POINT_CODE}"]')
    cell = row.locator("[data-stock]")
    expect(cell).to_have_attribute("data-stock", "set")
    expect(cell.locator('[data-stock-field="left"]')).to_have_text("1")
    expect(cell).to_contain_text("dipesan 9")
    expect(cell).to_contain_text("diserahkan 1")
    alert = page.locator('#alerts [data-alert="nearly_sold_out"]')
    expect(alert).to_contain_text("9 dari 10 paket")
    # The page re-reads the row (poll or refresh) and keeps the figures and the alert.
    page.wait_for_timeout(6000)
    expect(alert).to_contain_text("9 dari 10 paket")
    _no_sideways_scroll(page, PHONE["width"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "44-supervisor-alerts-360.png"))
    row.screenshot(path=str(SHOTS / "45-supervisor-stock-row-360.png"))
    assert errors == []
    context.close()

"""Words and looks in Debian's Chromium (issue 14 items 12 and 13): admins reach assisted
booking from their navigation, a disabled button looks disabled, on a 360 px phone the
header stays one row and the gate's NIK line one line, and public pages carry a
translated meta description. Screenshots (360 px and desktop) go to
``test-artifacts/screenshots/`` (``looks-*.png``).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.clock import today_local
from tests.servers import post_json
from tests.test_browser import (
    CHROMIUM,
    POINT_CODE,
    POINT_NAME,
    REPO,
    RESIDENT,
    SHOTS,
    UNDER_CI,
    VENV_BIN,
    LiveServer,
    _app_env,
    _flask,
    _free_port,
    _open,
    _scan,
    _shot,
    _sign_in,
    _slot_window,
    _wait_healthy,
    problems,  # noqa: F401  (the fixture)
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not UNDER_CI,
        reason="Debian's Chromium is not installed at /usr/bin/chromium (make browser)",
    ),
]

ADMIN = ("kepala-looks@antri.test", "admin-pass-1")
BOSS = ("pengawas-looks@antri.test", "boss-pass-1")
STAFF = ("petugas-looks@antri.test", "gate-pass-1")
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1280, "height": 900}}


@pytest.fixture(scope="module")
def looks_server(tmp_path_factory) -> Iterator[tuple[LiveServer, str]]:
    """Antri under gunicorn: seeded for two days, a slot running now at the gate's point,
    an admin, a supervisor, staff at the point, a schedule that makes no new slot (its
    button is disabled) and a booking for the slot running now (its code yielded)."""
    instance = tmp_path_factory.mktemp("antri-looks-browser")
    env = _app_env(instance)
    env["RATELIMIT_ENABLED"] = "false"
    _flask(env, "db", "upgrade")
    _flask(env, "seed-demo", "--days", "2")
    start, end, must_generate = _slot_window()
    if must_generate:
        _flask(
            env, "slots", "generate", POINT_CODE, "--date", start.date().isoformat(),
            "--start", f"{start:%H:%M}", "--end", f"{end:%H:%M}",
            "--length", str((end - start) // timedelta(minutes=1)), "--capacity", "5",
        )  # fmt: skip
    _flask(env, "users", "create", ADMIN[0], "--role", "admin", "--password", ADMIN[1])
    _flask(env, "users", "create", BOSS[0], "--role", "supervisor", "--password", BOSS[1])
    _flask(
        env, "users", "create", STAFF[0], "--role", "staff", "--point", POINT_CODE,
        "--password", STAFF[1],
    )  # fmt: skip
    tomorrow = today_local(1).isoformat()  # the test clock's tomorrow, as the seed's
    _flask(
        env, "schedules", "create", POINT_CODE, "--start", "07:00", "--end", "08:00",
        "--length", "30", "--capacity", "20", "--from", tomorrow, "--until", tomorrow,
    )  # fmt: skip
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = instance / "gunicorn.log"
    with log.open("w") as log_handle:
        server = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                *("-w", "2", "-b", f"127.0.0.1:{port}", "--no-control-socket"),
                "app:create_app()",
            ],
            cwd=REPO,
            env=env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(url, server, log)
        listing = f"{url}/api/v1/market-points/{POINT_CODE}/slots?date={start.date()}"
        with urllib.request.urlopen(listing, timeout=10) as answer:  # noqa: S310
            slots = json.load(answer)
        begins = start.astimezone(UTC)
        slot = next(s for s in slots if datetime.fromisoformat(s["starts_at"]) == begins)
        status, booked = post_json(f"{url}/api/v1/bookings", {"slot_id": slot["id"], **RESIDENT})
        assert status == 201, booked
        yield LiveServer(url, start.date().isoformat(), ""), booked["code"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _signed_in(browser, server, who, **options) -> Page:
    context = _open(browser, server, **options)
    page = context.new_page()
    page.goto("/login")
    _sign_in(page, *who)
    return page


def _one_row(page: Page) -> None:
    """The header is one row: its children share a line, its height is that row's,
    and no link is cut short to make it so."""
    box = page.evaluate(
        """() => {
          const h = document.querySelector('header'), s = getComputedStyle(h);
          const kids = [...h.children].map(k => k.getBoundingClientRect());
          return {height: h.getBoundingClientRect().height,
                  padding: parseFloat(s.paddingTop) + parseFloat(s.paddingBottom),
                  tops: kids.map(k => Math.round(k.top + k.height / 2)),
                  tallest: Math.max(...kids.map(k => k.height)),
                  cut: [...h.querySelectorAll('a')].filter(a => a.scrollWidth > a.clientWidth)
                                                   .map(a => a.textContent)};
        }"""
    )
    assert max(box["tops"]) - min(box["tops"]) <= 2, box
    assert box["cut"] == [], box  # every link readable in full, none cut short
    assert box["height"] == pytest.approx(box["tallest"] + box["padding"], abs=1), box


def test_admin_reaches_assisted_booking_from_the_admin_pages(browser, looks_server, problems):  # noqa: F811
    server, _code = looks_server
    SHOTS.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []
    for name, options in (("360", PHONE), ("desktop", DESKTOP)):
        page = problems.watch(_signed_in(browser, server, ADMIN, **options), f"admin {name}")
        page.goto("/admin/")
        page.locator(".adminnav").get_by_role("link", name="Bantu pesan").click()
        page.locator("#point").select_option(POINT_CODE)
        page.get_by_role("button", name="Lanjut").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Bantu pesan")
        first = page.locator("#slot option").first
        expect(first).to_contain_text("· Sisa")
        expect(first).to_contain_text(" tempat")
        _shot(page, f"looks-assist-{name}.png", taken)
        _one_row(page)
        page.goto("/admin/")
        _shot(page, f"looks-admin-home-{name}.png", taken)
        page.context.close()


def test_a_disabled_button_looks_disabled(browser, looks_server, problems):  # noqa: F811
    server, _code = looks_server
    taken: list[Path] = []
    page = problems.watch(_signed_in(browser, server, ADMIN, **DESKTOP), "admin")
    page.goto("/admin/schedules/1")
    button = page.locator("#generate")
    expect(button).to_be_disabled()
    looks = button.evaluate(
        "b => { const s = getComputedStyle(b); return [s.backgroundColor, s.cursor, s.color]; }"
    )
    # An enabled button of the same kind, for comparison: the page's own submit buttons.
    enabled = page.evaluate(
        """() => { const b = document.createElement('button'); document.body.append(b);
                   const s = getComputedStyle(b), seen = [s.backgroundColor, s.cursor, s.color];
                   b.remove(); return seen; }"""
    )
    assert looks[1] == "not-allowed"
    assert looks[0] != enabled[0] and looks[0] == "rgb(217, 217, 214)"
    assert looks[2] != enabled[2]
    _shot(page, "looks-disabled-desktop.png", taken)
    page.context.close()


# An element's height against its line height: one line when they agree.
LINE_BOX = "e => [e.getBoundingClientRect().height, parseFloat(getComputedStyle(e).lineHeight)]"


def test_phone_header_and_gate_nik_line_stay_one_line(browser, looks_server, problems):  # noqa: F811
    server, code = looks_server
    taken: list[Path] = []
    for who, label in ((STAFF, "staff"), (BOSS, "supervisor"), (ADMIN, "admin")):
        page = problems.watch(_signed_in(browser, server, who, **PHONE), label)
        page.goto("/gate" if who is STAFF else f"/gate?point={POINT_CODE}")
        _one_row(page)
        if who is STAFF:
            _scan(page, code)
            result = page.locator("#result")
            expect(result).to_have_attribute("data-result", "admitted")
            expect(page.locator("#result .who")).to_have_text(RESIDENT["name"])
            nik = page.locator("#result .nik")
            expect(nik).to_have_text("NIK ****0001")
            line = nik.evaluate(LINE_BOX)
            assert line[0] <= line[1] + 1, line
            _shot(page, "looks-gate-admit-360.png", taken)
            expect(result).not_to_have_class("result fullscreen admitted", timeout=5000)
            line = nik.evaluate(LINE_BOX)
            assert line[0] <= line[1] + 1, line
        _shot(page, f"looks-gate-{label}-360.png", taken)
        page.context.close()


DESCRIPTIONS = {
    "id": (
        "Pesan jadwal ambil pangan bersubsidi di pasar Jakarta dan dapatkan tiket QR: tanpa "
        "berdesakan di pintu masuk.",
        f"Pesan jadwal ambil pangan bersubsidi di {POINT_NAME}, Jakarta Pusat: lihat sisa "
        "tempat di setiap jam.",
    ),
    "en": (
        "Book a timed pickup slot for subsidised food at a Jakarta market and get a QR "
        "ticket: no crowd at the gate.",
        f"Book a pickup slot for subsidised food at {POINT_NAME}, Jakarta Pusat: see the "
        "places left at each time.",
    ),
}


@pytest.mark.parametrize("language", ["id", "en"])
def test_public_pages_have_a_translated_description(browser, looks_server, problems, language):  # noqa: F811
    server, _code = looks_server
    taken: list[Path] = []
    context = _open(browser, server, **PHONE)
    page = problems.watch(context.new_page(), "resident")
    general, of_point = DESCRIPTIONS[language]
    for path, expected in (
        (f"/?lang={language}", general),
        (f"/tickets/lookup?lang={language}", general),
        (f"/points/{POINT_CODE}?lang={language}", of_point),
    ):
        page.goto(path)
        expect(page.locator('meta[name="description"]')).to_have_attribute("content", expected)
        _one_row(page)
    _shot(page, f"looks-point-{language}-360.png", taken)
    context.close()

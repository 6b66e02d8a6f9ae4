"""The residents' forms in Debian's Chromium at 360 px (issue 14 items 7 to 11).

The app under test is the ``app`` fixture (SQLite) served in this process by a
threaded Werkzeug server, so a test can fix the clock the pages read
(``tests.fixed_clock.freeze``) and make exactly the slots it needs. Screenshots go to
``test-artifacts/screenshots/`` (and ``$ANTRI_SCREENSHOTS`` when set).
Skipped without /usr/bin/chromium, except under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect
from werkzeug.serving import make_server

from tests.fixed_clock import freeze
from tests.test_browser import CHROMIUM, EXPECT_TIMEOUT, SHOTS, UNDER_CI, Problems

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not UNDER_CI,
        reason="Debian's Chromium is not installed at /usr/bin/chromium (make browser)",
    ),
]

JAKARTA = ZoneInfo("Asia/Jakarta")
EVENING = datetime(2031, 3, 10, 21, 0, tzinfo=JAKARTA)  # after the day's last slot
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}


@pytest.fixture
def live(ctx, backend) -> Iterator[str]:
    """The test's app served on a free port of 127.0.0.1; yields its base URL."""
    if backend != "sqlite":
        pytest.skip("the pages are the same on PostgreSQL: one browser run is enough")
    server = make_server("127.0.0.1", 0, ctx, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


class FormProblems(Problems):
    """Problems, less Chromium's console line for a form answered 409 or 422 on
    purpose (a refused or faulty form is a page, not a failure)."""

    def _console(self, who, message) -> None:
        expected = re.match(r"Failed to load resource: .* status of (409|422)", message.text)
        if expected and re.search(r"/slots/\d+/(book|waiting-list)$", message.location["url"]):
            return
        super()._console(who, message)


@pytest.fixture
def problems() -> Iterator[Problems]:
    found = FormProblems()
    yield found
    assert not found.seen, "the browser saw problems:\n" + "\n".join(found.seen)


def _phone(browser: Browser, url: str, problems: Problems, javascript: bool = True) -> Page:
    context = browser.new_context(
        base_url=url, locale="id-ID", java_script_enabled=javascript, **PHONE
    )
    context.set_default_timeout(EXPECT_TIMEOUT)
    expect.set_options(timeout=EXPECT_TIMEOUT)
    return problems.watch(context.new_page(), "resident")


def _shot(page: Page, name: str) -> None:
    """Save a full-page screenshot; the page must not scroll sideways at 360 px."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{page.url} scrolls sideways: {width} px"
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("ANTRI_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(extra) / name)


def _book(page: Page, slot_id: int, name: str, nik: str, phone: str) -> None:
    page.goto(f"/slots/{slot_id}/book")
    page.locator("#name").fill(name)
    page.locator("#nik").fill(nik)
    page.locator("#phone").fill(phone)
    page.get_by_role("button", name="Pesan dan dapatkan tiket").click()


def test_every_fault_beside_its_field_without_javascript(browser, live, make_slot, problems):
    """Items 7 and 8: three faults at once, each beside its field, the first focused."""
    slot = make_slot(capacity=4, starts_in=180)
    page = _phone(browser, live, problems, javascript=False)
    _book(page, slot.id, "A", "123", "555")
    expect(page.locator("input[aria-invalid=true]")).to_have_count(3)
    expect(page.locator("#name")).to_be_focused()  # autofocus: no script
    expect(page.locator("#nik")).to_have_accessible_description("NIK harus terdiri dari 16 digit.")
    expect(page.locator("#nik")).to_have_value("")  # a wrong NIK is not echoed
    expect(page.locator("#phone-error")).to_be_visible()
    expect(page.locator("[role=alert]")).to_have_count(0)
    _shot(page, "h14-08-every-fault.png")


def test_a_wrong_phone_keeps_the_nik(browser, live, make_slot, nik, problems):
    """Item 7: only the wrong field is cleared; the NIK stays in its field."""
    slot = make_slot(capacity=4, starts_in=180)
    person = nik()
    page = _phone(browser, live, problems)
    _book(page, slot.id, "Siti Aminah", person, "0812")
    expect(page.locator("#phone")).to_be_focused()
    expect(page.locator("#phone")).to_have_attribute("aria-describedby", "phone-error")
    expect(page.locator("#nik")).to_have_value(person)
    expect(page.locator("#name")).to_have_value("Siti Aminah")
    assert person not in page.url
    _shot(page, "h14-07-nik-kept.png")
    page.locator("#phone").fill("0812 3456 7890")
    page.get_by_role("button", name="Pesan dan dapatkan tiket").click()
    expect(page).to_have_url(re.compile(r"/tickets/[A-Z0-9]{8}/[0-9a-f]{20}\?new=1$"))


def test_a_full_slot_offers_its_waiting_list(browser, live, make_slot, nik, problems):
    """Item 9: the booking link of a full slot opens its waiting-list form."""
    slot = make_slot(capacity=1, starts_in=180)
    page = _phone(browser, live, problems)
    _book(page, slot.id, "Budi Santoso", nik(), "0812 3456 7890")
    expect(page).to_have_url(re.compile(r"\?new=1$"))
    page.goto(f"/slots/{slot.id}/book")
    expect(page).to_have_url(re.compile(rf"/slots/{slot.id}/waiting-list$"))
    expect(page.locator("#slot-full")).to_contain_text("Tidak ada tempat tersisa")
    expect(page.get_by_text("Sisa 0 tempat")).to_have_count(0)
    expect(page.get_by_role("button", name="Masuk daftar tunggu")).to_be_visible()
    _shot(page, "h14-09-full-slot.png")


def test_the_market_page_opens_on_the_next_open_day(
    browser, live, make_point, make_slot, monkeypatch, problems
):
    """Item 10: after today's last slot the page opens on tomorrow and counts each day."""
    point = make_point(code="JKT-950", name="Pasar Uji Malam")
    morning = EVENING.replace(hour=8)
    make_slot(capacity=5, starts_in=0, point=point, now=morning)  # today, over
    for hour in range(10):  # tomorrow 08:00 to 17:00
        make_slot(capacity=5, starts_in=24 * 60 + hour * 60, point=point, now=morning)
    make_slot(capacity=5, starts_in=3 * 24 * 60, point=point, now=morning)
    freeze(monkeypatch, EVENING)
    page = _phone(browser, live, problems)
    page.goto(f"/points/{point.code}")
    expect(page.locator("h2[data-date]")).to_have_attribute("data-date", "2031-03-11")
    expect(page.locator(".card.slot")).to_have_count(10)
    expect(page.locator("[data-day='2031-03-11']")).to_contain_text("10 jadwal")
    expect(page.locator("[data-day='2031-03-11']")).to_have_attribute("aria-current", "date")
    expect(page.locator("[data-day='2031-03-10']")).to_contain_text("0 jadwal")
    _shot(page, "h14-10-market-page.png")
    page.locator("[data-day='2031-03-12']").click()
    page.locator("#next-open-day").click()
    expect(page.locator("h2[data-date]")).to_have_attribute("data-date", "2031-03-13")


@pytest.mark.parametrize("javascript", [False, True], ids=["no-js", "js"])
def test_cancel_asks_first(browser, live, make_slot, nik, problems, javascript):
    """Item 11: one tap opens a page that asks; keeping returns; yes cancels."""
    slot = make_slot(capacity=2, starts_in=24 * 60)
    page = _phone(browser, live, problems, javascript=javascript)
    _book(page, slot.id, "Siti Aminah", nik(), "0812 3456 7890")
    expect(page).to_have_url(re.compile(r"\?new=1$"))
    ticket = page.url.split("?")[0]
    if not javascript:
        _shot(page, "h14-11-ticket.png")
    page.get_by_role("link", name="Batalkan pemesanan").click()
    expect(page).to_have_url(f"{ticket}/cancel")
    expect(page.get_by_role("heading", level=1)).to_have_text("Batalkan pemesanan ini?")
    if not javascript:
        _shot(page, "h14-11-cancel-confirm.png")
    page.get_by_role("link", name="Tidak, simpan pemesanan").click()
    expect(page).to_have_url(ticket)
    expect(page.locator(".status")).to_contain_text("Terkonfirmasi")
    page.get_by_role("link", name="Batalkan pemesanan").click()
    page.get_by_role("button", name="Ya, batalkan pemesanan saya").click()
    expect(page).to_have_url(ticket)
    expect(page.locator(".status .pill.bad")).to_be_visible()
    if not javascript:
        _shot(page, "h14-11-cancelled.png")

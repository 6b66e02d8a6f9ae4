"""A resident enters a ballot and sees the result page, in Chromium on a 360 px phone
(issue 16). The app runs under gunicorn on the backend under test; the draw runs in
the test between the two pages. Screenshots: /tmp/ballot-*.png."""

from __future__ import annotations

import tempfile

import pytest
from playwright.sync_api import expect

from ballots.draw import draw_ballot
from extensions import db
from tests.ballots.conftest import PHONE
from tests.ballots.test_races import server  # noqa: F401  (a fixture)

SHOTS = tempfile.gettempdir() + "/"  # /tmp/ballot-*.png

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def sqlite_only(backend):
    """Skip before any server starts: the pages are the same on PostgreSQL, and one
    browser run is enough (the ballot's rules run on both in tests/ballots)."""
    if backend != "sqlite":
        pytest.skip("the pages are the same on PostgreSQL: one browser run is enough")


def test_enter_and_see_the_result(sqlite_only, browser, server, open_ballot, ballot_day, make_nik):  # noqa: F811
    point, slots = ballot_day
    ballot_id, closes_at = open_ballot.id, open_ballot.closes_at
    context = browser.new_context(
        base_url=server, locale="id-ID", viewport={"width": 360, "height": 800}
    )
    page = context.new_page()
    page.goto(f"/points/{point.code}?date=2026-12-05")
    expect(page.locator("#ballot-day")).to_contain_text("Undian")
    page.screenshot(path=SHOTS + "ballot-point.png", full_page=True)
    page.locator(f"a[href='/ballots/{ballot_id}']").first.click()
    page.fill("#name", "Siti Aminah")
    page.fill("#nik", make_nik("521050"))
    page.fill("#phone", PHONE)
    page.select_option("#first", str(slots[2].id))
    page.select_option("#second", str(slots[0].id))
    page.screenshot(path=SHOTS + "ballot-form.png", full_page=True)
    page.click("button:has-text('Daftar undian')")
    code = page.locator("#entry-code").inner_text().strip()
    assert len(code) == 8
    page.screenshot(path=SHOTS + "ballot-entered.png", full_page=True)
    draw_ballot(ballot_id, closes_at)
    db.session.commit()
    page.goto(f"/ballots/{ballot_id}")
    page.fill("#code", code)
    page.fill("#result-phone", PHONE)
    page.click("button:has-text('Lihat hasil')")
    result = page.locator("#result")
    expect(result).to_have_attribute("data-status", "won")
    expect(result).to_contain_text("Anda mendapat tempat")
    expect(page.locator("#proof-seed")).to_have_text(open_ballot.seed)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, width
    page.screenshot(path=SHOTS + "ballot-result.png", full_page=True)
    context.close()

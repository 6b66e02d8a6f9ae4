"""Pickup by a proxy in Debian's Chromium on a 360 px phone (issue 15 part 3): the
resident names a proxy on the ticket page, the gate admits the booking and shows whose
KTP to check, online and offline. Screenshots go to ``test-artifacts/screenshots/``.

The server is the gate browser tests' own (gunicorn on SQLite, a slot running now).
"""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.checkin.test_gate_browser import STORE, _book, _gate, gate_server  # noqa: F401
from tests.servers import post_json
from tests.test_browser import CHROMIUM, SHOTS, UNDER_CI

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not UNDER_CI,
        reason="Debian's Chromium is not installed at /usr/bin/chromium (make browser)",
    ),
]

PHONE = "0812 3456 7890"
PHONE_SIZE = {"width": 360, "height": 740}


def _by_proxy(server, code: str) -> list[int]:
    with sqlite3.connect(server.database) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT scan.by_proxy FROM scan JOIN booking ON booking.id = scan.booking_id"
                " WHERE booking.code = ? AND scan.result = 'admitted'",
                (code,),
            )
        ]


def test_a_proxy_named_on_the_ticket_is_shown_at_the_gate(browser, gate_server):  # noqa: F811
    booking = _book(gate_server)
    ticket_path = urlsplit(booking["ticket_url"]).path
    resident = browser.new_context(
        base_url=gate_server.url, locale="id-ID", viewport=PHONE_SIZE, is_mobile=True
    )
    resident.set_default_timeout(15_000)
    page = resident.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(ticket_path)
    expect(page.get_by_role("heading", name="Diambil oleh orang lain")).to_be_visible()

    # A wrong NIK first: the fault beside its field, the name kept, the NIK emptied.
    page.locator("#proxy_name").fill("Siti Aminah")
    page.locator("#proxy_nik").fill("3171 0445 0588")
    page.locator("#phone").fill(PHONE)
    page.locator("#set-proxy").click()
    expect(page.locator("#proxy_nik-error")).to_have_attribute("data-error", "invalid_nik")
    expect(page.locator("#proxy_name")).to_have_value("Siti Aminah")
    expect(page.locator("#proxy_nik")).to_have_value("")
    expect(page.locator("#proxy_nik")).to_be_focused()

    page.locator("#proxy_nik").fill("3171 0445 0588 0011")
    page.locator("#phone").fill(PHONE)
    page.locator("#set-proxy").click()
    now = page.locator("#proxy-now")
    expect(now).to_contain_text("Siti Aminah")
    expect(now).to_contain_text("****0011")
    expect(page.locator(".flash.ok")).to_contain_text("Siti Aminah")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "40-ticket-proxy.png"), full_page=True)
    assert errors == []
    resident.close()

    # A second booking whose proxy is named through the API before the gate syncs: the
    # offline gate shows it from its snapshot.
    offline_booking = _book(gate_server)
    status, body = post_json(
        f"{gate_server.url}/api/v1/bookings/{offline_booking['code']}/proxy",
        {"phone": PHONE, "proxy_name": "Joko Widodo", "proxy_nik": "3171044606770012"},
    )
    assert status == 200 and body["proxy"]["nik_last4"] == "0012", body

    gate = browser.new_context(base_url=gate_server.url, locale="id-ID", viewport=PHONE_SIZE)
    gate.set_default_timeout(15_000)
    staff = gate.new_page()
    staff.on("pageerror", lambda error: errors.append(str(error)))
    _gate(staff)
    staff.wait_for_function(f"() => localStorage.getItem('{STORE}snapshot') !== null")
    expect(staff.locator("#scan")).to_be_focused()
    staff.keyboard.type(booking["code"])
    staff.keyboard.press("Enter")
    result = staff.locator("#result")
    expect(result).to_have_attribute("data-result", "admitted")
    card = result.locator(".proxy")
    expect(card).to_have_attribute("data-proxy-nik", "0011")
    expect(card.locator(".who")).to_have_text("Siti Aminah")
    expect(card.locator(".nik")).to_have_text("NIK ****0011")
    assert card.locator(".check").text_content() == "periksa KTP"
    box = card.bounding_box()
    assert box is not None and box["width"] <= 360 and box["y"] + box["height"] <= 740
    staff.screenshot(path=str(SHOTS / "41-gate-proxy.png"))
    assert _by_proxy(gate_server, booking["code"]) == [1]

    staff.wait_for_timeout(2600)  # the answer shrinks back from full screen
    gate.set_offline(True)
    staff.reload()
    expect(staff.locator("#net-state")).to_have_attribute("data-offline", "true")
    staff.keyboard.type(offline_booking["code"])
    staff.keyboard.press("Enter")
    expect(result).to_have_attribute("data-offline", "true")
    expect(result).to_have_attribute("data-result", "admitted")
    expect(result.locator(".proxy .who")).to_have_text("Joko Widodo")
    expect(result.locator(".proxy .nik")).to_have_text("NIK ****0012")
    staff.screenshot(path=str(SHOTS / "42-gate-proxy-offline.png"))
    gate.set_offline(False)
    expect(staff.locator("#net-state")).to_have_attribute("data-waiting", "0", timeout=15_000)
    assert _by_proxy(gate_server, offline_booking["code"]) == [1]
    assert errors == []
    gate.close()

"""The ticket page tells the resident when to arrive (issue 15 part 2), in Chromium.

Two residents book the last slot of the day at a seeded point through the real app
under gunicorn (the server of tests/test_browser.py); the second one's ticket, on a
360 px phone, says "Datang pukul HH:MM", the start of the slot's second arrival wave.
Screenshot: ``test-artifacts/screenshots/waves-ticket.png``.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from playwright.sync_api import expect

from tests.servers import post_json
from tests.test_browser import (  # noqa: F401  (live_server and problems are fixtures)
    JAKARTA,
    POINT_CODE,
    SHOTS,
    _open,
    live_server,
    problems,
    pytestmark,
)


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310
        return json.loads(answer.read())


def test_the_ticket_page_shows_the_arrival_time(browser, live_server, problems):  # noqa: F811
    points = [p["code"] for p in _get(f"{live_server.url}/api/v1/market-points")]
    code = next(c for c in points if c != POINT_CODE)  # away from the journey's slot
    slots = _get(f"{live_server.url}/api/v1/market-points/{code}/slots?date={live_server.day}")
    slot = max((s for s in slots if s["remaining"] >= 2), key=lambda s: s["starts_at"])
    starts = datetime.fromisoformat(slot["starts_at"])
    answers = [
        post_json(
            f"{live_server.url}/api/v1/bookings",
            {"slot_id": slot["id"], "name": name, "nik": nik, "phone": phone},
        )
        for name, nik, phone in (
            ("Ani Lestari", "3171044505900002", "081211110001"),
            ("Budi Santoso", "3171040505900003", "081211110002"),
        )
    ]
    assert [status for status, _ in answers] == [201, 201], answers
    arrive = datetime.fromisoformat(answers[1][1]["arrive_at"])
    assert arrive == starts + timedelta(minutes=10)  # the second wave
    shown = f"{arrive.astimezone(JAKARTA):%H:%M}"

    context = _open(browser, live_server, viewport={"width": 360, "height": 800})
    page = problems.watch(context.new_page(), "resident")
    page.goto(urlsplit(answers[1][1]["ticket_url"]).path)
    arrival = page.locator("#arrive-at")
    expect(arrival).to_contain_text(f"Datang pukul {shown}")
    expect(arrival).to_have_attribute("data-arrive-at", arrive.isoformat())
    arrival.scroll_into_view_if_needed()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "waves-ticket.png"), full_page=True)
    context.close()

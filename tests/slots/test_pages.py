"""The HTML pages of the three roles, driven through the test client."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from extensions import db
from slots.models import Booking


def _login(client, email, password="correct-horse-1"):
    return client.post("/login", data={"email": email, "password": password})


def test_resident_books_sees_ticket_looks_it_up_and_cancels(client, make_slot, nik):
    slot = make_slot(capacity=4, starts_in=180)
    point = slot.market_point
    home = client.get("/?q=senen")
    assert home.status_code == 200 and point.name in home.text
    day = slot.starts_at.astimezone(ZoneInfo("Asia/Jakarta")).date()
    listing = client.get(f"/points/{point.code}?date={day}")
    assert f"/slots/{slot.id}/book" in listing.text

    person = nik()
    form = client.get(f"/slots/{slot.id}/book")
    assert form.status_code == 200
    bad = client.post(
        f"/slots/{slot.id}/book", data={"name": "Ani", "nik": "123", "phone": "081234567890"}
    )
    assert bad.status_code == 422 and 'data-error="invalid_nik"' in bad.text
    done = client.post(
        f"/slots/{slot.id}/book",
        data={"name": "Ani Lestari", "nik": person, "phone": "0812 3456 7890"},
    )
    assert done.status_code == 302
    ticket_url = done.headers["Location"]
    booking = db.session.scalar(select(Booking))
    assert booking.code in ticket_url

    page = client.get(ticket_url)
    assert page.status_code == 200
    assert f"{booking.code[:4]}-{booking.code[4:]}" in page.text
    assert point.name in page.text and "Ani Lestari" in page.text
    assert person not in page.text and f"****{person[-4:]}" in page.text
    assert page.headers["Cache-Control"] == "private, no-store"
    qr_src = re.search(r'<img src="([^"]+qr\.png)"', page.text).group(1)
    assert client.get(qr_src).mimetype == "image/png"
    assert client.get(ticket_url.rsplit("/", 1)[0] + "/00000000000000000000").status_code == 404

    lookup = client.post("/tickets/lookup", data={"code": booking.code, "phone": "+6281234567890"})
    assert lookup.status_code == 302 and lookup.headers["Location"].split("?")[0] in ticket_url
    miss = client.post("/tickets/lookup", data={"code": booking.code, "phone": "081200000000"})
    assert miss.status_code == 404 and 'data-error="booking_not_found"' in miss.text

    cancel_url = ticket_url.split("?")[0] + "/cancel"
    assert client.post(cancel_url, data={"confirm": "yes"}).status_code == 302
    db.session.expire_all()
    assert db.session.scalar(select(Booking.status)) == "cancelled"
    assert client.get(ticket_url.split("?")[0]).text.count("qr.png") == 0


def test_full_slot_shows_a_clear_message(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    data = {"name": "Ani Lestari", "nik": nik(), "phone": "081234567890"}
    assert client.post(f"/slots/{slot.id}/book", data=data).status_code == 302
    again = client.post(f"/slots/{slot.id}/book", data={**data, "nik": nik()})
    assert again.status_code == 409 and 'data-error="slot_full"' in again.text


def test_gate_page_scans_and_counts(client, make_slot, make_user, nik):
    slot = make_slot(capacity=4, starts_in=-5)
    make_user("gate@antri.test", "staff", slot.market_point)
    assert client.get("/gate").status_code == 302  # to the login page
    assert _login(client, "gate@antri.test", "wrong-password").status_code == 400
    assert _login(client, "gate@antri.test").headers["Location"].endswith("/gate")
    booked = client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Rina", "nik": nik(), "phone": "081234567890"},
    ).json
    page = client.post("/gate", data={"scan": booked["ticket"] + "\r\n"})
    assert 'data-result="admitted"' in page.text
    assert re.search(r'id="inside-now">1<', page.text)
    again = client.post("/gate", data={"scan": booked["code"]})
    assert 'data-reason="already_checked_in"' in again.text
    assert client.get("/supervisor").status_code == 403


def test_supervisor_sees_every_point(client, make_slot, make_user, make_point):
    slot = make_slot(capacity=4, starts_in=-5)
    make_point(code="JKT-904", name="Pasar Kedua")
    make_user("boss@antri.test", "supervisor")
    assert _login(client, "boss@antri.test").headers["Location"].endswith("/supervisor")
    page = client.get("/supervisor")
    assert page.status_code == 200
    assert slot.market_point.name in page.text and "Pasar Kedua" in page.text
    assert 'http-equiv="refresh"' in page.text
    chooser = client.get("/gate")
    assert "JKT-904" in chooser.text
    assert 'id="scan"' in client.get(f"/gate?point={slot.market_point.code}").text


@pytest.fixture
def csrf_on(app):
    app.config["WTF_CSRF_ENABLED"] = True
    yield
    app.config["WTF_CSRF_ENABLED"] = False


def test_forms_need_a_csrf_token(client, make_slot, nik, csrf_on):
    slot = make_slot(capacity=4, starts_in=180)
    data = {"name": "Ani Lestari", "nik": nik(), "phone": "081234567890"}
    forged = client.post(f"/slots/{slot.id}/book", data=data)
    assert forged.status_code == 400 and 'data-error="csrf_failed"' in forged.text
    token = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"',
        client.get(f"/slots/{slot.id}/book").text,
    ).group(1)
    assert (
        client.post(f"/slots/{slot.id}/book", data={**data, "csrf_token": token}).status_code == 302
    )
    assert db.session.scalar(select(func.count(Booking.id))) == 1


def test_english_is_available(client, make_point):
    make_point()
    assert client.get("/?lang=en").status_code == 200
    assert 'lang="en"' in client.get("/").text


def test_healthz(client, backend):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "redis": "disabled"}


def test_unknown_pages_are_clean_404s(client):
    assert client.get("/nope").status_code == 404
    api = client.get("/api/v1/nope")
    assert api.status_code == 404 and api.json["error"] == "not_found"
    assert client.get("/points/NOPE").status_code == 404
    assert client.get("/slots/999999/book").status_code == 404


def test_healthz_reports_redis(client, app, redis_url):
    app.config["REDIS_URL"] = redis_url
    try:
        live = client.get("/healthz")
        app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
        dead = client.get("/healthz")
    finally:
        app.config["REDIS_URL"] = None
    assert (live.status_code, live.json["redis"], live.json["status"]) == (200, "ok", "ok")
    assert (dead.status_code, dead.json["redis"], dead.json["status"]) == (200, "error", "degraded")


def test_cancel_button_only_while_cancelling_is_allowed(client, make_slot, nik):
    soon = make_slot(capacity=2, starts_in=30)
    later = make_slot(capacity=2, starts_in=24 * 60)
    pages = {}
    for name, slot in (("soon", soon), ("later", later)):
        done = client.post(
            f"/slots/{slot.id}/book",
            data={"name": "Ani Lestari", "nik": nik(), "phone": "081234567890"},
        )
        pages[name] = client.get(done.headers["Location"]).text
    assert "/cancel" not in pages["soon"] and "60" in pages["soon"]
    assert "/cancel" in pages["later"]


def test_gate_survives_an_empty_scan(client, make_slot, make_user):
    slot = make_slot(capacity=4, starts_in=-5)
    make_user("gate@antri.test", "staff", slot.market_point)
    _login(client, "gate@antri.test")
    page = client.post("/gate", data={"scan": "   \r\n"})
    assert page.status_code == 200
    assert 'id="scan"' in page.text and "flash error" in page.text


def test_lookup_finds_a_waiting_list_place_too(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Budi", "nik": nik(), "phone": "081234567890"},
    )
    entry = client.post(
        f"/api/v1/slots/{slot.id}/waiting-list",
        json={"name": "Tono", "nik": nik(), "phone": "081298765432"},
    ).json
    found = client.post("/tickets/lookup", data={"code": entry["code"], "phone": "081298765432"})
    assert found.status_code == 302 and f"/waiting/{entry['code']}/" in found.headers["Location"]


def test_language_link_keeps_the_page_and_its_query(client, make_point):
    make_point()
    page = client.get("/?q=senen")
    assert 'href="/?q=senen&amp;lang=en"' in page.text

"""Bad input gets a clear 4xx, never a 500, and writes nothing."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from extensions import db
from slots.models import Booking, Resident


@pytest.mark.parametrize("slot_id", [2**31, 2**63, -(2**63) - 1, 0, -1])
def test_out_of_range_slot_ids(client, slot_id, nik):
    body = {"slot_id": slot_id, "name": "Budi", "nik": nik(), "phone": "081234567890"}
    response = client.post("/api/v1/bookings", json=body)
    assert response.status_code == 404 and response.json["error"] == "slot_not_found"
    assert db.session.scalar(select(func.count(Resident.id))) == 0


def test_huge_slot_id_in_page_url(client):
    assert client.get(f"/slots/{2**63}/book").status_code == 404
    assert client.get(f"/slots/{2**31}/book").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/market-points?q=%00",
        "/?q=%00",
        "/points/%00",
        "/api/v1/market-points/%00/slots",
    ],
)
def test_nul_bytes_in_urls(client, url):
    response = client.get(url)
    assert response.status_code == 422
    assert "invalid_characters" in response.text


@pytest.mark.parametrize("name", ["A\ud800B", "Bu\x00di"])
def test_lone_surrogates_and_nul_in_json(client, make_slot, nik, name):
    slot = make_slot(capacity=2, starts_in=120)
    body = {"slot_id": slot.id, "name": name, "nik": nik(), "phone": "081234567890"}
    response = client.post("/api/v1/bookings", json=body)
    assert response.status_code == 422 and response.json["error"] == "invalid_characters"
    assert db.session.scalar(select(func.count(Booking.id))) == 0


def test_deeply_nested_json(client):
    body = '{"a":' + "[" * 20000 + "]" * 20000 + "}"
    response = client.post("/api/v1/bookings", data=body, content_type="application/json")
    assert response.status_code == 422 and response.json["error"] == "invalid_json"


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "2026-02-30", "20260101"])
def test_far_or_bad_dates(client, make_point, day):
    point = make_point()
    api = client.get(f"/api/v1/market-points/{point.code}/slots?date={day}")
    assert api.status_code == 422 and api.json["error"] == "invalid_date"
    assert client.get(f"/points/{point.code}?date={day}").status_code == 200  # shows today


def test_login_next_with_newlines_is_ignored(client, make_user):
    make_user("boss@antri.test", "supervisor")
    response = client.post(
        "/login?next=/%0D%0ALocation:%20http://evil.example",
        data={"email": "boss@antri.test", "password": "correct-horse-1"},
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/supervisor")


def test_failed_booking_form_echoes_the_nik_only_into_its_field(client, make_slot, nik):
    # Issue 14 item 7: a NIK that was right is kept, in its field of this no-store page
    # only (no message, no URL); a wrong one is cleared.
    slot = make_slot(capacity=2, starts_in=120)
    person = nik()
    response = client.post(
        f"/slots/{slot.id}/book", data={"name": "Ani", "nik": person, "phone": "12"}
    )
    assert response.status_code == 422
    assert response.text.count(person) == 1
    assert re.search(rf'<input [^>]*name="nik"[^>]*value="{person}"', response.text)
    assert response.headers["Cache-Control"] == "private, no-store"
    wrong = person[:-4] + "0000"
    response = client.post(
        f"/slots/{slot.id}/book", data={"name": "Ani", "nik": wrong, "phone": "12"}
    )
    assert response.status_code == 422 and wrong not in response.text


def test_overlapping_slots_are_refused(ctx, make_point):
    from datetime import date, time

    from slots.errors import SlotOverlap
    from slots.schedules import generate_slots

    point = make_point()
    generate_slots(point, date(2031, 1, 5), time(9, 0), time(10, 0), 30, 10)
    with pytest.raises(SlotOverlap):
        generate_slots(point, date(2031, 1, 5), time(9, 35), time(9, 40), 5, 10)
    again = generate_slots(point, date(2031, 1, 5), time(9, 0), time(11, 0), 30, 10)
    assert (len(again.existing), len(again.created)) == (2, 2)


def test_a_forbidden_character_in_a_query_or_nested_field_names_it(client):
    query = client.get("/api/v1/market-points?q=Pasar&q=%00")
    assert query.status_code == 422 and "q" in query.json["fields"]
    body = {"slot_id": 1, "name": "Siti", "nik": "1", "phone": "1"}
    body["x"] = [{"a": "b"}, {"a": "\x00"}]
    nested = client.post("/api/v1/bookings", json=body)
    assert nested.status_code == 422 and "x[1].a" in nested.json["fields"], nested.json


def test_a_repeated_query_key_is_read_by_its_first_value(client, make_point):
    point = make_point()
    first_bad = client.get(f"/api/v1/market-points/{point.code}/slots?date=2026-02-30&date=")
    assert (first_bad.status_code, first_bad.json["error"]) == (422, "invalid_date")
    first_good = client.get(f"/api/v1/market-points/{point.code}/slots?date=&date=2026-02-30")
    assert first_good.status_code == 200  # the first, empty: today


def test_an_empty_date_is_today_on_the_slot_list_only(client, make_point, make_user):
    point = make_point()
    _, token = make_user("root@antri.test", "admin")
    export = client.get(
        "/api/v1/exports/bookings.csv?date=", headers={"Authorization": f"Bearer {token}"}
    )
    assert (export.status_code, export.json["error"]) == (422, "invalid_date")
    assert client.get(f"/api/v1/market-points/{point.code}/slots?date=").status_code == 200

"""Booking rules on both databases: capacity, per-NIK limit, cancel, look-up, errors."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from extensions import db
from slots.models import Booking, Slot
from slots.schedules import generate_slots


def _book(client, slot_id, nik, phone="081234567890", name="Budi Santoso"):
    return client.post(
        "/api/v1/bookings", json={"slot_id": slot_id, "name": name, "nik": nik, "phone": phone}
    )


def test_capacity_is_a_hard_cap(client, make_slot, nik):
    slot = make_slot(capacity=2, starts_in=120)
    codes = [_book(client, slot.id, nik()).status_code for _ in range(3)]
    assert codes == [201, 201, 409]
    full = _book(client, slot.id, nik())
    assert full.json["error"] == "slot_full"
    db.session.expire_all()
    assert db.session.get(Slot, slot.id).booked_count == 2


def test_one_booking_per_nik_per_window(client, make_slot, make_point, nik):
    person = nik()
    first = make_slot(capacity=5, starts_in=120)
    other_point = make_point(code="JKT-901")
    six_days_later = make_slot(capacity=5, starts_in=120 + 6 * 24 * 60, point=other_point)
    eight_days_later = make_slot(capacity=5, starts_in=120 + 8 * 24 * 60)
    assert _book(client, first.id, person).status_code == 201
    refused = _book(client, six_days_later.id, person)
    assert refused.status_code == 409 and refused.json["error"] == "limit_reached"
    assert _book(client, eight_days_later.id, person).status_code == 201


def test_cancel_frees_the_place_and_the_limit(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    person = nik()
    booked = _book(client, slot.id, person, phone="0812-1111-2222").json
    assert _book(client, slot.id, nik()).json["error"] == "slot_full"

    wrong = client.post(f"/api/v1/bookings/{booked['code']}/cancel", json={"phone": "08120000000"})
    assert wrong.status_code == 404 and wrong.json["error"] == "booking_not_found"

    done = client.post(f"/api/v1/bookings/{booked['code']}/cancel", json={"phone": "6281211112222"})
    assert done.status_code == 200 and done.json["status"] == "cancelled"
    again = client.post(
        f"/api/v1/bookings/{booked['code']}/cancel", json={"phone": "6281211112222"}
    )
    assert again.status_code == 409 and again.json["error"] == "cancel_not_allowed"

    # The place and the NIK's allowance are both free again.
    assert _book(client, slot.id, person).status_code == 201


def test_cancel_refused_inside_cutoff(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=30)  # default cut-off is 60 minutes
    booked = _book(client, slot.id, nik()).json
    response = client.post(
        f"/api/v1/bookings/{booked['code']}/cancel", json={"phone": "081234567890"}
    )
    assert response.status_code == 409
    assert response.json["error"] == "cancel_not_allowed"
    assert response.json["cutoff_minutes"] == 60
    assert db.session.scalar(select(Booking.status)) == "confirmed"


def test_lookup_gives_one_404_for_unknown_code_and_wrong_phone(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=120)
    booked = _book(client, slot.id, nik()).json
    wrong_phone = client.get(f"/api/v1/bookings/{booked['code']}?phone=081299999999")
    unknown = client.get("/api/v1/bookings/ACDEFGHJ?phone=081234567890")
    garbage = client.get("/api/v1/bookings/x?phone=abc")
    assert wrong_phone.status_code == unknown.status_code == garbage.status_code == 404
    assert wrong_phone.json == unknown.json == garbage.json
    lower = client.get(f"/api/v1/bookings/{booked['code'].lower()}?phone=081234567890")
    assert lower.status_code == 200 and lower.json["code"] == booked["code"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"slot_id": 1, "name": "Budi", "nik": "123", "phone": "081234567890"}, 422, "invalid_nik"),
        (
            {"slot_id": 1, "name": "Budi", "nik": "3171041205900001", "phone": "12"},
            422,
            "invalid_phone",
        ),
        (
            {"slot_id": 1, "name": "", "nik": "3171041205900001", "phone": "081234567890"},
            422,
            "invalid_name",
        ),
        (
            {"slot_id": "1", "name": "Budi", "nik": "3171041205900001", "phone": "081234567890"},
            422,
            "invalid_slot_id",
        ),
        (
            {"slot_id": 999999, "name": "Budi", "nik": "3171041205900001", "phone": "081234567890"},
            404,
            "slot_not_found",
        ),
        (
            {"slot_id": 1, "name": ["x"], "nik": "3171041205900001", "phone": "081234567890"},
            422,
            "invalid_name",
        ),
    ],
)
def test_bad_booking_input_is_refused_and_writes_nothing(client, make_slot, body, status, error):
    slot = make_slot(capacity=3, starts_in=120)
    if body["slot_id"] == 1:
        body = {**body, "slot_id": slot.id}
    response = _book(client, **{k if k != "slot_id" else "slot_id": v for k, v in body.items()})
    assert response.status_code == status
    assert response.json["error"] == error
    assert response.json["message"]
    assert db.session.scalar(select(func.count(Booking.id))) == 0
    db.session.expire_all()
    assert db.session.get(Slot, slot.id).booked_count == 0


def test_malformed_json_is_422_not_500(client):
    response = client.post("/api/v1/bookings", data="{not json", content_type="application/json")
    assert response.status_code == 422 and response.json["error"] == "invalid_json"
    response = client.post("/api/v1/bookings", json=[1, 2])
    assert response.status_code == 422


def test_ended_slot_cannot_be_booked(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=-40, minutes=30)
    response = _book(client, slot.id, nik())
    assert response.status_code == 409 and response.json["error"] == "slot_closed"


def test_unpublished_slot_is_invisible(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=120)
    slot.published_at = slot.starts_at - timedelta(minutes=60)  # publishes in an hour
    db.session.commit()
    response = _book(client, slot.id, nik())
    assert response.status_code == 404 and response.json["error"] == "slot_not_found"
    day = slot.starts_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Jakarta")).date()
    listed = client.get(f"/api/v1/market-points/{slot.market_point.code}/slots?date={day}")
    assert listed.json == []


def test_slot_at_an_inactive_point_cannot_be_booked(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=120)
    slot.market_point.active = False
    db.session.commit()
    response = _book(client, slot.id, nik())
    assert (response.status_code, response.json["error"]) == (404, "slot_not_found")
    db.session.expire_all()
    assert db.session.get(Slot, slot.id).booked_count == 0


def test_a_full_slot_is_refused_before_the_limit_is_looked_at(client, make_slot, nik):
    person = nik()
    held = make_slot(capacity=2, starts_in=120)
    full = make_slot(capacity=1, starts_in=240)
    assert _book(client, held.id, person).status_code == 201
    assert _book(client, full.id, nik()).status_code == 201
    refused = _book(client, full.id, person)
    assert (refused.status_code, refused.json["error"]) == (409, "slot_full")
    # With a place free, the same request meets the limit instead.
    roomy = make_slot(capacity=2, starts_in=300)
    refused = _book(client, roomy.id, person)
    assert (refused.status_code, refused.json["error"]) == (409, "limit_reached")
    db.session.expire_all()
    assert db.session.get(Slot, roomy.id).booked_count == 0


def test_a_booking_writes_its_confirmation_in_its_transaction(client, make_slot, nik):
    from slots.models import Notice

    slot = make_slot(capacity=2, starts_in=240)
    answer = _book(client, slot.id, nik())
    assert answer.status_code == 201
    booking = db.session.scalar(select(Booking).where(Booking.code == answer.json["code"]))
    notices = db.session.scalars(select(Notice).where(Notice.booking_id == booking.id)).all()
    assert [(n.kind, n.status, n.attempts) for n in notices] == [("confirmation", "pending", 0)]
    assert notices[0].due_at == booking.created_at
    assert (booking.status, booking.name, booking.phone) == (
        "confirmed",
        "Budi Santoso",
        "+6281234567890",
    )


def test_slots_listing_uses_the_local_date(client, make_point, ctx):
    from datetime import date, time

    point = make_point(code="JKT-950")
    generate_slots(point, date(2031, 3, 4), time(6, 0), time(7, 0), 30, 10)
    db.session.commit()
    listed = client.get(f"/api/v1/market-points/{point.code}/slots?date=2031-03-04")
    assert [s["starts_at"] for s in listed.json] == [
        "2031-03-04T06:00:00+07:00",
        "2031-03-04T06:30:00+07:00",
    ]
    assert listed.json[0]["capacity"] == 10 and listed.json[0]["remaining"] == 10
    # 06:00 WIB is 23:00 UTC the day before: it must not leak into the UTC date.
    assert client.get(f"/api/v1/market-points/{point.code}/slots?date=2031-03-03").json == []
    assert client.get(f"/api/v1/market-points/{point.code}/slots?date=3-4").status_code == 422
    assert client.get("/api/v1/market-points/NOPE/slots").status_code == 404


def test_market_points_listing_and_search(client, make_point):
    make_point(code="JKT-960", name="Pasar Senen Blok III", kecamatan="Senen")
    make_point(
        code="JKT-961", name="Pasar Induk Kramat Jati", kecamatan="Kramatjati", city="Jakarta Timur"
    )
    everything = client.get("/api/v1/market-points").json
    assert {p["code"] for p in everything} == {"JKT-960", "JKT-961"}
    assert set(everything[0]) == {
        "code",
        "name",
        "address",
        "kecamatan",
        "city",
        "latitude",
        "longitude",
        "safe_limit",
        "timezone",
    }
    assert [p["code"] for p in client.get("/api/v1/market-points?q=kramat").json] == ["JKT-961"]


def test_concurrent_bookings_never_exceed_capacity(app, ctx, make_slot, nik):
    """Twenty threads, each with its own connection, race for five places."""
    slot_id = make_slot(capacity=5, starts_in=120).id
    niks = [nik() for _ in range(20)]
    barrier = threading.Barrier(len(niks))
    results: list[int] = []
    lock = threading.Lock()

    def attempt(person: str) -> None:
        with app.test_client() as client:
            barrier.wait()
            status = _book(client, slot_id, person).status_code
        with lock:
            results.append(status)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in niks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [201] * 5 + [409] * 15
    db.session.expire_all()
    assert db.session.get(Slot, slot_id).booked_count == 5
    assert db.session.scalar(select(func.count(Booking.id))) == 5


def test_concurrent_bookings_by_one_nik_get_one_place(app, ctx, make_slot, nik):
    slots = [make_slot(capacity=5, starts_in=120 + i * 30) for i in range(6)]
    person = nik()
    barrier = threading.Barrier(len(slots))
    results: list[str] = []

    def attempt(slot_id: int) -> None:
        with app.test_client() as client:
            barrier.wait()
            response = _book(client, slot_id, person)
        results.append(response.json.get("error", "confirmed"))

    threads = [threading.Thread(target=attempt, args=(s.id,)) for s in slots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["confirmed"] + ["limit_reached"] * 5

"""Idempotency-Key on the booking API, and the web form's double submit."""

from __future__ import annotations

import re
import threading

from sqlalchemy import func, select

from extensions import db
from slots.models import Booking, Slot


def _body(slot_id, nik, phone="081234567890"):
    return {"slot_id": slot_id, "name": "Dewi Sartika", "nik": nik, "phone": phone}


def test_same_key_and_body_returns_the_first_booking(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=120)
    body = _body(slot.id, nik())
    first = client.post("/api/v1/bookings", json=body, headers={"Idempotency-Key": "k-1"})
    again = client.post("/api/v1/bookings", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert first.headers["Idempotent-Replayed"] == "false"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["code"] == first.json["code"]
    assert again.json["ticket"] == first.json["ticket"]
    assert db.session.scalar(select(func.count(Booking.id))) == 1
    db.session.expire_all()
    assert db.session.get(Slot, slot.id).booked_count == 1


def test_same_key_with_another_body_is_422(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=120)
    client.post("/api/v1/bookings", json=_body(slot.id, nik()), headers={"Idempotency-Key": "k-2"})
    other = client.post(
        "/api/v1/bookings", json=_body(slot.id, nik()), headers={"Idempotency-Key": "k-2"}
    )
    assert other.status_code == 422 and other.json["error"] == "idempotency_key_reused"
    assert db.session.scalar(select(func.count(Booking.id))) == 1


def test_malformed_keys_are_422(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=120)
    for key in ("", "x" * 201, "tab\there"):
        response = client.post(
            "/api/v1/bookings", json=_body(slot.id, nik()), headers={"Idempotency-Key": key}
        )
        assert response.status_code == 422, key
        assert response.json["error"] == "invalid_idempotency_key"
    assert db.session.scalar(select(func.count(Booking.id))) == 0


def test_a_refused_request_does_not_burn_the_key(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=120)
    client.post("/api/v1/bookings", json=_body(slot.id, nik()))
    person = nik()
    full = client.post(
        "/api/v1/bookings", json=_body(slot.id, person), headers={"Idempotency-Key": "k-3"}
    )
    assert full.status_code == 409 and full.json["error"] == "slot_full"
    other_slot = make_slot(capacity=1, starts_in=240)
    retry = client.post(
        "/api/v1/bookings", json=_body(other_slot.id, person), headers={"Idempotency-Key": "k-3"}
    )
    assert retry.status_code == 201


def test_concurrent_repeats_make_one_booking(app, ctx, make_slot, nik):
    slot_id = make_slot(capacity=5, starts_in=120).id
    body = _body(slot_id, nik())
    barrier = threading.Barrier(6)
    codes: list[str] = []

    def send() -> None:
        with app.test_client() as client:
            barrier.wait()
            response = client.post(
                "/api/v1/bookings", json=body, headers={"Idempotency-Key": "tap-tap"}
            )
        codes.append(response.json.get("code") or response.json["error"])

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(codes)) == 1 and len(codes[0]) == 8
    assert db.session.scalar(select(func.count(Booking.id))) == 1


def test_web_form_double_submit_is_one_booking(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=120)
    form = client.get(f"/slots/{slot.id}/book").text
    request_id = re.search(r'name="request_id" type="hidden" value="([^"]+)"', form).group(1)
    data = {"name": "Dewi Sartika", "nik": nik(), "phone": "081234567890"}
    first = client.post(f"/slots/{slot.id}/book", data={**data, "request_id": request_id})
    second = client.post(f"/slots/{slot.id}/book", data={**data, "request_id": request_id})
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert db.session.scalar(select(func.count(Booking.id))) == 1

"""The booking rush through a real multi-process server, on SQLite and PostgreSQL.

First a naive check-then-insert booking (the guard switched off) is raced to show
that the harness does catch an oversell; then the real endpoint is raced and holds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from extensions import db
from slots.models import Booking, Slot
from tests.servers import gunicorn, post_json

pytestmark = pytest.mark.slow


@pytest.fixture
def server(app, ctx, tmp_path):
    """The app under gunicorn (4 workers x 8 threads) on the backend under test."""
    env = {
        "ANTRI_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "NIK_HASH_KEY": app.config["NIK_HASH_KEY"],
        "TICKET_KEY_DIR": app.config["TICKET_KEY_DIR"],
        "RATELIMIT_ENABLED": "false",
        "REDIS_URL": "",
    }
    with gunicorn(env, workers=4, threads=8, log=tmp_path / "gunicorn.log") as url:
        yield url


def _race(url: str, bodies: list[dict]) -> list[tuple[int, dict]]:
    """Send every body at once (all threads released together) and collect answers."""
    barrier = threading.Barrier(len(bodies))

    def send(body: dict) -> tuple[int, dict]:
        barrier.wait()
        return post_json(f"{url}/api/v1/bookings", body)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, bodies))


def test_unguarded_check_then_insert_oversells(app, ctx, make_slot, nik):
    """Guard off: read the count, then insert. The race the real code must not have."""
    from slots.models import Resident

    slot_id = make_slot(capacity=3, starts_in=120).id
    resident = Resident(nik_hash="x" * 64, nik_last4="0000")
    db.session.add(resident)
    db.session.commit()
    resident_id = resident.id
    barrier = threading.Barrier(12)

    def naive_book(i: int) -> None:
        with app.app_context():
            barrier.wait()
            taken = db.session.scalar(
                select(func.count(Booking.id)).where(Booking.slot_id == slot_id)
            )
            time.sleep(0.05)  # the gap between reading and writing
            if taken < 3:
                db.session.add(
                    Booking(
                        code=f"NAIVE{i:03d}",
                        slot_id=slot_id,
                        resident_id=resident_id,
                        name="x",
                        nik_last4="0000",
                        phone="+6281200000000",
                        status="cancelled",  # outside the active-per-slot unique index
                    )
                )
                db.session.commit()
            db.session.remove()

    threads = [threading.Thread(target=naive_book, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = db.session.scalar(select(func.count(Booking.id)).where(Booking.slot_id == slot_id))
    assert made > 3, "the harness should catch an oversell when the guard is off"


def test_120_residents_race_for_30_places(server, make_slot, nik):
    slot_id = make_slot(capacity=30, starts_in=120).id
    bodies = [
        {"slot_id": slot_id, "name": f"Warga {i}", "nik": nik(), "phone": "081234567890"}
        for i in range(120)
    ]
    answers = _race(server, bodies)
    outcome = Counter(body.get("error", status) for status, body in answers)
    assert outcome == {201: 30, "slot_full": 90}
    assert Counter(status for status, _ in answers) == {201: 30, 409: 90}
    db.session.expire_all()
    assert db.session.get(Slot, slot_id).booked_count == 30
    confirmed = db.session.scalar(
        select(func.count(Booking.id)).where(
            Booking.slot_id == slot_id, Booking.status == "confirmed"
        )
    )
    assert confirmed == 30


def test_one_nik_races_for_ten_slots(server, make_slot, nik):
    slot_ids = [make_slot(capacity=5, starts_in=120 + 30 * i).id for i in range(10)]
    person = nik()
    bodies = [
        {"slot_id": slot_id, "name": "Satu Orang", "nik": person, "phone": "081234567890"}
        for slot_id in slot_ids
    ]
    answers = _race(server, bodies)
    assert Counter(body.get("error", status) for status, body in answers) == {
        201: 1,
        "limit_reached": 9,
    }
    assert db.session.scalar(select(func.count(Booking.id))) == 1


def test_thirty_racing_bookings_arrive_ten_ten_ten(server, make_slot, nik):
    """Arrival waves under a rush (issue 15): 45 residents race for the 30 places of a
    30-minute slot through several workers; the waves fill 10/10/10 exactly, each
    wave chosen in a snapshot that sees every booking placed before it."""
    slot = make_slot(capacity=30, starts_in=120, minutes=30)
    slot_id, starts_at = slot.id, slot.starts_at
    bodies = [
        {"slot_id": slot_id, "name": f"Warga {i}", "nik": nik(), "phone": "081234567890"}
        for i in range(45)
    ]
    answers = _race(server, bodies)
    assert Counter(status for status, _ in answers) == {201: 30, 409: 15}
    told = Counter(body["arrive_at"] for status, body in answers if status == 201)
    assert told == {(starts_at + timedelta(minutes=m)).isoformat(): 10 for m in (0, 10, 20)}
    db.session.expire_all()
    stored = Counter(
        db.session.scalars(
            select(Booking.arrive_at).where(
                Booking.slot_id == slot_id, Booking.status == "confirmed"
            )
        )
    )
    assert stored == {starts_at + timedelta(minutes=m): 10 for m in (0, 10, 20)}

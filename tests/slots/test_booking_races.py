"""Races on the booking path (``slots.service.place_booking``) that a fresh tester
found worth keeping: a close committed while a booking waits, one NIK on many slots,
bookings and cancellations mixed. Threads and the test client, on both databases."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from common.timeutil import utcnow
from extensions import db
from slots.errors import SlotClosedByMarket
from slots.identity import hash_nik
from slots.models import ACTIVE_STATUSES, Booking, Resident, Slot


def _body(slot_id, nik, phone="081234567890"):
    return {"slot_id": slot_id, "name": "Budi Santoso", "nik": nik, "phone": phone}


def _pg_only(backend):
    if backend != "postgresql":
        pytest.skip("a PostgreSQL row-lock race")


@pytest.mark.parametrize("capacity", [1, 2])
def test_close_committed_while_a_booking_waits_is_told_as_closed(
    app, ctx, backend, make_slot, nik, capacity
):
    """The market closes a slot (one place booked) while a booking is in flight.

    With a place free the booking's update qualifies, waits on the slot's row lock,
    and after the close re-checks the row: refused as closed by the market, not as
    full (the claim's snapshot predates the close; the reason is read afresh). With
    the slot full the update does not wait: at that moment the slot was full and
    still open, and that is the answer."""
    _pg_only(backend)
    slot = make_slot(capacity=capacity, starts_in=120)
    slot_id = slot.id
    client = app.test_client()
    assert client.post("/api/v1/bookings", json=_body(slot_id, nik())).status_code == 201
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    closer = engine.connect()
    tx = closer.begin()
    # What close_slot does in effect: lock the slot row, close it, free its places.
    closer.execute(
        sa.text("UPDATE slot SET closed_at = now(), booked_count = 0 WHERE id = :i"),
        {"i": slot_id},
    )
    answers = []

    def book():
        with app.app_context():
            began = time.monotonic()
            r = app.test_client().post("/api/v1/bookings", json=_body(slot_id, nik()))
            answers.append((r.status_code, r.json["error"], time.monotonic() - began))

    t = threading.Thread(target=book)
    t.start()
    time.sleep(0.5)
    tx.commit()
    closer.close()
    engine.dispose()
    t.join(10)
    status, error, waited = answers[0]
    if capacity == 2:
        assert (status, error) == (409, SlotClosedByMarket.code)
        assert waited >= 0.4  # it did wait for the close to commit
    else:
        assert (status, error) == (409, "slot_full")
        assert waited < 0.4


def test_same_nik_races_on_many_slots_books_once(app, ctx, backend, make_slot, make_point, nik):
    """One NIK submitted to 8 slots at once (limit 1): exactly one booking, counters
    equal the active bookings, every refusal a 409 limit_reached."""
    person = nik()
    slots = [make_slot(capacity=3, starts_in=120 + 60 * i).id for i in range(8)]
    barrier = threading.Barrier(len(slots))

    def book(slot_id):
        with app.app_context():
            barrier.wait()
            r = app.test_client().post("/api/v1/bookings", json=_body(slot_id, person))
            return r.status_code, (r.json or {}).get("error")

    with ThreadPoolExecutor(len(slots)) as pool:
        answers = list(pool.map(book, slots))
    assert answers.count((201, None)) == 1, answers
    assert all(a in ((201, None), (409, "limit_reached")) for a in answers), answers
    db.session.expire_all()
    for sid in slots:
        active = db.session.scalar(
            select(func.count(Booking.id)).where(
                Booking.slot_id == sid, Booking.status == "confirmed"
            )
        )
        assert db.session.get(Slot, sid).booked_count == active


def test_mixed_rush_keeps_counters(app, ctx, backend, make_slot, nik):
    """Bookings, duplicate NIKs and cancellations at once on a few small slots: never
    a 500, never over capacity, booked_count == active bookings."""
    slots = [make_slot(capacity=2, starts_in=180 + 60 * i).id for i in range(3)]
    people = [nik() for _ in range(10)]
    rng = random.Random(7)
    jobs = [(rng.choice(slots), rng.choice(people)) for _ in range(40)]
    statuses = []

    def work(job):
        slot_id, person = job
        with app.app_context():
            c = app.test_client()
            r = c.post("/api/v1/bookings", json=_body(slot_id, person))
            statuses.append((r.status_code, (r.json or {}).get("error")))
            if r.status_code == 201 and rng.random() < 0.5:
                cr = c.post(
                    f"/api/v1/bookings/{r.json['code']}/cancel",
                    json={"phone": "081234567890"},
                )
                statuses.append((cr.status_code, (cr.json or {}).get("error")))

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(work, jobs))
    assert all(s < 500 for s, _ in statuses), statuses
    db.session.expire_all()
    for sid in slots:
        slot = db.session.get(Slot, sid)
        active = db.session.scalar(
            select(func.count(Booking.id)).where(
                Booking.slot_id == sid, Booking.status == "confirmed"
            )
        )
        assert slot.booked_count == active <= slot.capacity


def test_a_booking_of_the_same_nik_committed_while_one_waits_is_counted(
    app, ctx, backend, make_slot, nik, monkeypatch
):
    """Another request of the same NIK holds the resident's lock and books; this one
    waits for the lock. Its own snapshot predates that booking, so its first count is
    not trusted (the resident's lock_version moved) and it counts again: with a limit
    of two, the third booking is refused, not written."""
    _pg_only(backend)
    monkeypatch.setitem(app.config, "BOOKING_LIMIT_PER_NIK", 2)
    person = nik()
    first, second, third = (make_slot(capacity=3, starts_in=120 + 60 * i) for i in range(3))
    ids = first.id, second.id, third.id
    client = app.test_client()
    assert client.post("/api/v1/bookings", json=_body(ids[0], person)).status_code == 201
    resident_id = db.session.scalar(select(Booking.resident_id))
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    other = engine.connect()
    tx = other.begin()
    # What a concurrent booking of this NIK does: lock the resident, take a place, write.
    other.execute(
        sa.text("UPDATE resident SET lock_version = lock_version + 1 WHERE id = :r"),
        {"r": resident_id},
    )
    other.execute(
        sa.text("UPDATE slot SET booked_count = booked_count + 1 WHERE id = :s"), {"s": ids[1]}
    )
    other.execute(
        sa.text(
            "INSERT INTO booking (code, slot_id, resident_id, name, nik_last4, phone,"
            " language, status, created_at, arrive_at) VALUES ('RACECODE', :s, :r, 'Ani',"
            " :last4, '+6281234567890', 'id', 'confirmed', now(),"
            " (SELECT starts_at FROM slot WHERE id = :s))"
        ),
        {"s": ids[1], "r": resident_id, "last4": person[-4:]},
    )
    answers = []

    def book():
        with app.app_context():
            began = time.monotonic()
            r = app.test_client().post("/api/v1/bookings", json=_body(ids[2], person))
            answers.append((r.status_code, r.json.get("error"), time.monotonic() - began))

    t = threading.Thread(target=book)
    t.start()
    time.sleep(0.5)
    tx.commit()
    other.close()
    engine.dispose()
    t.join(10)
    status, error, waited = answers[0]
    assert (status, error) == (409, "limit_reached")
    assert waited >= 0.4  # it did wait for the other booking to commit
    db.session.expire_all()
    assert db.session.get(Slot, ids[2]).booked_count == 0
    held = select(func.count(Booking.id)).where(Booking.resident_id == resident_id)
    assert db.session.scalar(held) == 2


def test_purged_resident_recreated_meanwhile_passes_fresh_check(app, ctx, backend, make_slot, nik):
    """The resident row purged and made anew while a booking of the same NIK waits:
    the upsert's lock_version matches the snapshot's plus one, but it is another row,
    so the count is not trusted (a fresh tester found this).

    A resident who booked once (lock_version 0) and whose bookings were purged has a
    resident row no booking names. Request T1 of that NIK starts its booking statement
    (snapshot sees the old row, version 0) and waits on the slot's row lock (another
    booking of that slot in flight). Meanwhile the purge deletes the old resident row
    and request T2 of the same NIK books another slot (creating a new resident row,
    version 0). When T1 resumes, its upsert hits T2's new row and bumps it to 1 ==
    0 + 1: "fresh", although the count it made in its snapshot cannot see the new
    resident's booking. Limit 1, two active bookings."""
    _pg_only(backend)
    person = nik()
    slot_a = make_slot(capacity=5, starts_in=120)
    slot_b = make_slot(capacity=5, starts_in=180)
    a_id, b_id = slot_a.id, slot_b.id
    # The resident of an earlier, purged visit: first seen long ago, version 0, named
    # by no booking (purge_personal_data nulls booking.resident_id).
    old = utcnow() - timedelta(days=400)
    db.session.add(
        Resident(
            nik_hash=hash_nik(person, app.config["NIK_HASH_KEY"]),
            nik_last4=person[-4:],
            lock_version=0,
            created_at=old,
        )
    )
    db.session.commit()

    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    holder = engine.connect()
    tx = holder.begin()
    # Another booking of slot A in flight: it holds slot A's row lock.
    holder.execute(
        sa.text("UPDATE slot SET booked_count = booked_count WHERE id = :s"), {"s": a_id}
    )
    answers = []

    def book_a():
        with app.app_context():
            r = app.test_client().post("/api/v1/bookings", json=_body(a_id, person))
            answers.append((r.status_code, (r.json or {}).get("error")))

    t1 = threading.Thread(target=book_a)
    t1.start()
    time.sleep(0.6)  # T1's statement has its snapshot and waits for slot A

    # The nightly purge runs now: the resident row nobody names is deleted.
    purger = engine.connect()
    with purger.begin():
        gone = purger.execute(
            sa.text("DELETE FROM resident WHERE nik_hash = :h AND created_at <= :c"),
            {"h": hash_nik(person, app.config["NIK_HASH_KEY"]), "c": old},
        ).rowcount
    purger.close()
    assert gone == 1

    # T2: the same NIK books slot B (not locked): a new resident row, version 0.
    with app.app_context():
        r2 = app.test_client().post("/api/v1/bookings", json=_body(b_id, person))
    assert r2.status_code == 201, r2.json

    tx.commit()
    holder.close()
    engine.dispose()
    t1.join(10)
    assert answers, "T1 did not answer"

    db.session.expire_all()
    resident_ids = db.session.scalars(
        select(Resident.id).where(Resident.nik_hash == hash_nik(person, app.config["NIK_HASH_KEY"]))
    ).all()
    active = db.session.scalar(
        select(func.count(Booking.id)).where(
            Booking.resident_id.in_(resident_ids), Booking.status.in_(ACTIVE_STATUSES)
        )
    )
    # BOOKING_LIMIT_PER_NIK is 1: T1 must be refused (409 limit_reached).
    assert answers[0] == (409, "limit_reached"), (answers, active)
    assert active == 1
    assert db.session.get(Slot, a_id).booked_count == 0


def test_limit_refusal_on_fresh_path_writes_and_tells_nothing(app, ctx, backend, make_slot, nik):
    """A limit refusal on the one-statement path wrote the place and the resident's
    bump; the refusal rolls them back and publishes no live event, and a full-slot
    refusal (nothing written) leaves nothing either."""
    from common import events

    published = []
    app.extensions[events.PUBLISHER], saved = published.extend, app.extensions.get(events.PUBLISHER)
    try:
        person = nik()
        first, second = make_slot(capacity=3, starts_in=120), make_slot(capacity=3, starts_in=180)
        full = make_slot(capacity=0, starts_in=240)
        client = app.test_client()
        assert client.post("/api/v1/bookings", json=_body(first.id, person)).status_code == 201
        version = db.session.scalar(select(Resident.lock_version))
        published.clear()
        r = client.post("/api/v1/bookings", json=_body(second.id, person))
        assert (r.status_code, r.json["error"]) == (409, "limit_reached")
        r = client.post("/api/v1/bookings", json=_body(full.id, nik()))
        assert (r.status_code, r.json["error"]) == (409, "slot_full")
        db.session.expire_all()
        assert db.session.get(Slot, second.id).booked_count == 0
        assert db.session.scalar(select(Resident.lock_version)) == version
        assert db.session.scalar(select(func.count(Resident.id))) == 1
        assert db.session.scalar(select(func.count(Booking.id))) == 1
        assert published == []
    finally:
        if saved is None:
            app.extensions.pop(events.PUBLISHER, None)
        else:
            app.extensions[events.PUBLISHER] = saved

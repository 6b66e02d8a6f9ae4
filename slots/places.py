"""Taking and giving back a place in a slot, and writing the booking that holds it.

Capacity is a hard cap (DESIGN.md): ``slot.booked_count`` counts the active bookings
and never exceeds ``slot.capacity`` (a CHECK constraint backs it). Every change of the
count goes through this module: a place is taken by one conditional update of the
slot row (``take_place``: ``HAS_ROOM``, the cap, in its WHERE), given back by
``give_back_places``, and a capacity is changed only while the booked places still
fit (``resize``). The one-statement PostgreSQL booking (``slots.booking``) puts the
same ``HAS_ROOM`` in its SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    bindparam,
    insert,
    update,
)

from common import events
from common.locking import execute_locking
from extensions import db
from notify.outbox import insert_notice, note_queued, via_for
from slots.availability import NOT_BALLOTED, NOT_CLOSED
from slots.codes import new_booking_code
from slots.identity import ResidentInput
from slots.models import CONFIRMED, WEB, Booking, Slot
from slots.waves import place_in_wave

if TYPE_CHECKING:  # for annotations only: booking imports this module
    from slots.availability import SlotSummary


MAX_CAPACITY = 10_000  # places in one slot, at most (issue 8)

# The capacity cap, as the SQL condition a slot row must meet for a place to be taken.
HAS_ROOM = Slot.booked_count < Slot.capacity

_TAKE_PLACE = (
    update(Slot)
    .where(
        Slot.id == bindparam("slot_id"),
        HAS_ROOM,
        # In the WHERE, not only checked before: a close committed while this waited
        # for the row lock is seen here.
        NOT_CLOSED,
        NOT_BALLOTED,  # likewise a ballot made meanwhile (issue 16)
    )
    .values(booked_count=Slot.booked_count + 1)
    .execution_options(synchronize_session=False)
)

_GIVE_BACK = (
    update(Slot)
    .where(Slot.id == bindparam("slot_id"))
    .values(booked_count=Slot.booked_count - bindparam("count"))
    .execution_options(synchronize_session=False)
)


def take_place(slot_id: int) -> bool:
    """Count one more booking in slot ``slot_id`` if it has room and is not closed.

    Returns: True when the place was taken (the slot row is locked from then on), False
      when the slot is full or closed (nothing written). The caller's model of the
      slot, if any, has a stale ``booked_count`` (``forget_count``).
    """
    return execute_locking("slot", _TAKE_PLACE, {"slot_id": slot_id}).rowcount == 1


def give_back_places(slot_id: int, count: int = 1) -> None:
    """Count ``count`` bookings fewer in slot ``slot_id``: places freed by cancelled,
    no-show or closed bookings that nobody on the waiting list took."""
    execute_locking("slot", _GIVE_BACK, {"slot_id": slot_id, "count": count})


def resize(slot_id: int, capacity: int) -> bool:
    """Set slot ``slot_id``'s capacity to ``capacity`` places unless more are booked.

    One conditional update of the slot row, the row every booking updates, so a cut
    racing with bookings is serialised by the database. Returns: True when changed.
    """
    changed = execute_locking(
        "slot",
        update(Slot)
        .where(Slot.id == slot_id, Slot.booked_count <= capacity)
        .values(capacity=capacity)
        .execution_options(synchronize_session=False),
        autoflush=True,
    )
    return changed.rowcount == 1


def forget_count(slot_id: int) -> None:
    """Expire ``booked_count`` of the slot's model if this session holds it: the count
    changed in the database behind the ORM's back."""
    slot = db.session.identity_map.get(db.session.identity_key(Slot, slot_id))
    if slot is not None:
        db.session.expire(slot, ["booked_count"])


_INSERT_BOOKING = insert(Booking).returning(Booking.id)


def insert_booking(
    slot: Slot | SlotSummary,
    resident_id: int,
    person: ResidentInput,
    now: datetime,
    notice: str,
    packages: int = 0,
    channel: str = WEB,
) -> tuple[int, str, datetime]:
    """Write a confirmed booking whose place is already counted (the slot's row lock
    held), give it its arrival wave (``slots.waves.place_in_wave``) and its ``notice``;
    tell the live feed. ``packages``: the stock it reserved (count, issue 15);
    ``channel``: how the resident reached Antri (``BOOKING_CHANNELS``, issue 17).
    Returns (booking id, booking code, arrive_at aware UTC)."""
    conn = db.session.connection()
    code = new_booking_code()
    booking_id = conn.execute(
        _INSERT_BOOKING,
        {
            "code": code,
            "slot_id": slot.id,
            "resident_id": resident_id,
            "name": person.name,
            "nik_last4": person.nik_last4,
            "phone": person.phone,
            "language": person.language,
            "kk_hash": person.kk_hash,
            "status": CONFIRMED,
            "created_at": now,
            "packages": packages,
            "arrive_at": slot.starts_at,
            "channel": channel,
        },
    ).scalar_one()
    # Before the notice: its message tells the arrival time.
    arrive_at = place_in_wave(booking_id, slot, now)
    notices = insert_notice(booking_id, notice, now, via_for(channel))
    note_new_booking(slot, booking_id, notices, now)
    return booking_id, code, arrive_at


def note_new_booking(
    slot: Slot | SlotSummary,
    booking_id: int,
    notices: list[tuple[int, datetime]],
    now: datetime,
) -> None:
    """Note what a new booking wrote for after the commit: its ``notices`` ((id, due
    instant) pairs) for ``notify.relay.hand_on_notices``, its event for the live feed."""
    note_queued(notices)
    events.record(
        events.live_event(
            "booking",
            slot.market_point_id,
            slot.market_point.code,
            now,
            slot_id=slot.id,
            booking_id=booking_id,
        )
    )


def new_booking(
    slot: Slot,
    resident_id: int,
    person: ResidentInput,
    now: datetime,
    notice: str,
    packages: int = 0,
) -> Booking:
    """``insert_booking``, returning the Booking model."""
    booking_id, _, _ = insert_booking(slot, resident_id, person, now, notice, packages)
    return db.session.get(Booking, booking_id)

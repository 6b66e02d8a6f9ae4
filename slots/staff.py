"""What market staff do to slots and bookings: assisted booking at the desk, moving a
booking, changing capacity, closing slots and days.

The admin pages, the admin API and the CLI all call these functions; each one writes
its change and its audit row (``common.audit``) in one transaction and goes through
the same rules as residents' bookings: capacity changes are conditional updates of
the slot row (so a cut racing with bookings can never leave more bookings than
places), closures cancel bookings with a ``slot_closed`` notice each, and freed places
go to the waiting list. The caller's one commit follows (``common.transactions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    select,
    update,
)

from common.audit import Actor, record
from common.timeutil import local_day_bounds, utcnow
from extensions import db
from notify.outbox import owe_no_reminder, queue_notice, rearm_notice, void_reminder
from slots.availability import valid_id
from slots.booking import book_slot_once, find_booking
from slots.codes import request_fingerprint
from slots.errors import (
    AlreadyBooked,
    BookingNotFound,
    BookingNotMovable,
    CapacityBelowBooked,
    InvalidCapacity,
    SlotClosedByMarket,
    SlotFull,
    SlotNotFound,
)
from slots.feed import record_booking_event, record_slot_change
from slots.limits import check_limits_for_move, holds_place_in
from slots.locks import lock_confirmed_booking, lock_slot
from slots.models import CANCELLED, CONFIRMED, EXPIRED, WAITING, Booking, Slot, WaitingListEntry
from slots.places import MAX_CAPACITY, give_back_places, resize, take_place
from slots.points import get_point
from slots.proxy import move_proxy_day
from slots.status import transition
from slots.stock import give_back_packages, move_packages, slot_day
from slots.waiting import fill_from_waiting_list, free_place
from slots.waves import place_in_wave


def _slot_for_update(slot_id: int) -> Slot:
    """Return slot ``slot_id`` (published or not) with its row lock taken.

    Raises: SlotNotFound.
    """
    if not valid_id(slot_id):
        raise SlotNotFound()
    slot = db.session.get(Slot, slot_id)
    if slot is None:
        raise SlotNotFound()
    lock_slot(slot)
    db.session.refresh(slot)
    return slot


def set_capacity(slot_id: int, capacity: object, actor: Actor, now: datetime | None = None) -> Slot:
    """Change a slot's capacity (places), never below the places booked in it.

    Raising it hands the new places to the slot's waiting list first (in order, within
    each resident's limit). The change is one conditional UPDATE on the slot row, the
    same row every booking updates, so a cut and bookings racing in are serialised by
    the database and ``booked_count <= capacity`` always holds (and a CHECK constraint
    backs it).
    Args: capacity, an int 0..10000; actor; now, aware UTC.
    Returns: the slot, refreshed.
    Raises: InvalidCapacity (422), SlotNotFound (404), CapacityBelowBooked (409, with
      ``booked``). Rule: issue 8.
    """
    if not isinstance(capacity, int) or isinstance(capacity, bool):
        raise InvalidCapacity()
    if not 0 <= capacity <= MAX_CAPACITY:
        raise InvalidCapacity()
    now = now or utcnow()
    slot = _slot_for_update(slot_id)
    if slot.closed_at is not None:
        raise SlotClosedByMarket()
    before = slot.capacity
    changed = resize(slot.id, capacity)
    db.session.refresh(slot)
    if not changed:
        raise CapacityBelowBooked(CapacityBelowBooked.default_message, booked=slot.booked_count)
    promoted = fill_from_waiting_list(slot, now)
    record(
        actor,
        "slot.capacity",
        "slot",
        slot.id,
        {"capacity": before},
        {"capacity": capacity, "promoted_from_waiting_list": promoted},
        slot.market_point_id,
        now,
    )
    return slot


@dataclass(frozen=True)
class Closed:
    """What closing did: slots closed now (count), bookings cancelled (count), and
    waiting-list entries ended (count)."""

    slots: int
    bookings_cancelled: int
    waiting_cleared: int


def close_slot(slot_id: int, actor: Actor, now: datetime | None = None) -> Closed:
    """Close a slot: nobody can book it any more, every confirmed booking is cancelled
    with a ``slot_closed`` notice (one per booking), and its waiting list is cleared.

    Residents already checked in keep their visit. Closing a closed slot changes
    nothing (a script may repeat it). Args: actor; now, aware UTC.
    Returns: Closed. Raises: SlotNotFound (404). Rule: issue 8.
    """
    now = now or utcnow()
    slot = _slot_for_update(slot_id)
    if slot.closed_at is not None:
        return Closed(0, 0, 0)
    slot.closed_at = now
    bookings = list(
        db.session.scalars(
            select(Booking).where(Booking.slot_id == slot.id, Booking.status == CONFIRMED)
        )
    )
    cancelled = 0
    cancelled_ids: set[int] = set()
    for booking in bookings:
        if transition(Booking, booking.id, CONFIRMED, CANCELLED, cancelled_at=now):
            cancelled += 1
            cancelled_ids.add(booking.id)
            queue_notice(booking, "slot_closed", now)
            void_reminder(booking.id)
            record_booking_event("cancellation", booking, slot, now)
    if cancelled:
        give_back_places(slot.id, cancelled)
        # Their packages back to the day's stock (issue 15); only confirmed bookings
        # are cancelled, so nothing handed out comes back.
        freed = sum(b.packages for b in bookings if b.id in cancelled_ids)
        give_back_packages(slot.market_point_id, slot_day(slot), freed)
    cleared = db.session.execute(
        update(WaitingListEntry)
        .where(WaitingListEntry.slot_id == slot.id, WaitingListEntry.status == WAITING)
        .values(status=EXPIRED, resolved_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    record_slot_change("slot_closed", slot, now)
    record(
        actor,
        "slot.close",
        "slot",
        slot.id,
        {"closed_at": None},
        {"closed_at": now, "bookings_cancelled": cancelled, "waiting_cleared": cleared},
        slot.market_point_id,
        now,
    )
    db.session.flush()
    return Closed(1, cancelled, cleared)


def close_day(code: str, day: date, actor: Actor, now: datetime | None = None) -> Closed:
    """Close every open slot of market point ``code`` on local ``day`` (see
    ``close_slot``). Returns the totals. Raises: MarketPointNotFound (404)."""
    point = get_point(code)
    start, end = local_day_bounds(day, point.timezone)
    ids = db.session.scalars(
        select(Slot.id)
        .where(Slot.market_point_id == point.id, Slot.starts_at >= start, Slot.starts_at < end)
        .order_by(Slot.id)  # one lock order for every closer
    ).all()
    totals = [close_slot(slot_id, actor, now) for slot_id in ids]
    return Closed(
        sum(t.slots for t in totals),
        sum(t.bookings_cancelled for t in totals),
        sum(t.waiting_cleared for t in totals),
    )


def move_booking(code: str, to_slot_id: int, actor: Actor, now: datetime | None = None) -> Booking:
    """Move a confirmed booking to another slot of the same market point with a free
    place, under the same per-NIK and per-household limits as booking it.

    Locks in the order every rule uses: the booking row first (a move and a cancel of
    one booking decide one after the other, and each sees where the other left it),
    then both slot rows in id order (two moves cannot deadlock), then the resident's
    and the household's. The place is taken in the target by the same conditional
    update as a booking, and the old place goes to the old slot's waiting list. The
    resident gets a ``slot_moved`` notice with the new time and ticket link, and the
    reminder follows the new start. Same point only: the ticket names its market
    point, and a resident booked at the desk has only the printed one.
    A move to another day gives its packages back to the old day's stock and reserves
    the new day's (issue 15).
    Returns: the booking. Raises: BookingNotFound, SlotNotFound (404);
      BookingNotMovable, AlreadyBooked, SoldOut, SlotFull, LimitReached,
      HouseholdLimitReached (409). Rule: issue 8, issue 15.
    """
    now = now or utcnow()
    booking = find_booking(code)
    if booking is None:
        raise BookingNotFound(_l("No booking has this code."))
    if not valid_id(to_slot_id) or db.session.get(Slot, to_slot_id) is None:
        raise SlotNotFound()
    # The booking's row lock, and where it is now (a concurrent move or cancel that
    # committed first is seen here).
    old_id = lock_confirmed_booking(booking.id)
    if old_id is None or old_id == to_slot_id:
        raise BookingNotMovable()
    slots = {i: _slot_for_update(i) for i in sorted((old_id, to_slot_id))}
    old, target = slots[old_id], slots[to_slot_id]
    db.session.refresh(booking)
    if (
        target.market_point_id != old.market_point_id
        or target.closed_at is not None
        or target.ends_at <= now
    ):
        raise BookingNotMovable()
    if booking.resident_id is not None and holds_place_in(booking.resident_id, target.id):
        raise AlreadyBooked()
    # The packages follow the booking to another day (after the slots' locks, before
    # the resident's: the lock order); a same-day move changes nothing.
    move_packages(booking, old, target)
    if booking.resident_id is not None:
        check_limits_for_move(booking, target)
    if not take_place(target.id):
        raise SlotFull()
    db.session.execute(
        update(Booking)
        .where(Booking.id == booking.id)
        .values(slot_id=target.id)
        .execution_options(synchronize_session=False)
    )
    place_in_wave(booking.id, target, now, written=False)
    free_place(old, now)
    db.session.refresh(booking)
    move_proxy_day(booking)  # the proxy limit counts on the slot's local date
    rearm_notice(booking, "slot_moved", now, now)
    remind_at = target.starts_at - timedelta(minutes=current_app.config["REMINDER_MINUTES"])
    if remind_at > now:
        rearm_notice(booking, "reminder", remind_at, now)
    else:
        owe_no_reminder(booking, now)
    record(
        actor,
        "booking.move",
        "booking",
        booking.code,
        {"slot_id": old.id, "starts_at": old.starts_at},
        {"slot_id": target.id, "starts_at": target.starts_at},
        target.market_point_id,
        now,
    )
    db.session.flush()
    return booking


def book_for_resident(
    slot_id: int,
    fields: tuple[str, str, str],
    kk: str,
    request_id: str,
    actor: Actor,
) -> Booking:
    """Assisted booking: staff book for a resident at the desk, under the same rules and
    limits as ``book_slot`` (the phone may be empty: no messages then).

    Args: fields, (name, nik, phone); kk, the family card where the point asks for it;
      request_id, the form's id (a resend books once); actor, the staff member.
    Returns: the booking (flushed); recorded in the audit log with the last four NIK
      digits only, once (a resend adds nothing).
    Raises: what ``book_slot_once`` raises.
    """
    fingerprint = request_fingerprint({"slot_id": slot_id, "fields": fields, "kk": kk})
    booking, replayed = book_slot_once(
        f"assist:{request_id}",
        fingerprint,
        slot_id,
        *fields,
        phone_optional=True,
        kk=kk,
        channel="assisted",
    )
    if not replayed:
        record(
            actor,
            "booking.assist",
            "booking",
            booking.code,
            {},
            {"slot_id": booking.slot_id, "nik_last4": booking.nik_last4},
            booking.slot.market_point_id,
        )
    return booking

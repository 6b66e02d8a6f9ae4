"""What the clock ends: no-shows, late arrivals whose place others wait for, expired
waiting lists, waiting lists a sold-out day held once its stock is back, and the purge
of personal data. Run by ``jobs.run_timed_work``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import (
    case,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from common.timeutil import utcnow
from extensions import db
from notify.outbox import void_reminder
from slots.feed import record_slot_change
from slots.locks import lock_slot
from slots.models import (
    CONFIRMED,
    EXPIRED,
    NO_SHOW,
    NOTICE_PENDING,
    NOTICE_VOID,
    WAITING,
    Booking,
    BookingProxy,
    Household,
    IdempotencyKey,
    Notice,
    Resident,
    Slot,
    WaitingListEntry,
)
from slots.places import give_back_places
from slots.status import transition
from slots.stock import covers_one_more, give_back_packages, slot_day
from slots.waiting import fill_from_waiting_list, free_place, someone_may_take
from slots.window import closed_for_ends_by


def expire_past_slots(now: datetime | None = None) -> tuple[int, int]:
    """Close what the clock has ended: confirmed bookings never checked in by the end
    of their slot plus CHECKIN_LATE_MINUTES become ``no_show`` (freeing the place and
    giving their packages back to the day's stock, issue 15), and waiting-list entries
    of ended slots become ``expired``.

    Args: now, aware UTC. Returns: (no-shows marked, entries expired). Safe to repeat.
    """
    now = now or utcnow()
    closed = closed_for_ends_by(now, current_app.config)
    overdue = db.session.scalars(
        select(Booking.id)
        .join(Slot, Booking.slot_id == Slot.id)
        .where(Booking.status == CONFIRMED, Slot.ends_at <= closed)
        .order_by(Booking.id)
    ).all()
    marked = 0
    changed: dict[int, str] = {}  # slot id -> live event kind
    for booking_id in overdue:
        if transition(Booking, booking_id, CONFIRMED, NO_SHOW):
            marked += 1
            changed[db.session.get(Booking, booking_id).slot_id] = "no_show"
            void_reminder(booking_id)
            # Where the booking is in the database (not the session's copy of it).
            slot_id, packages = db.session.execute(
                select(Booking.slot_id, Booking.packages).where(Booking.id == booking_id)
            ).one()
            give_back_places(slot_id)
            slot = db.session.get(Slot, slot_id)
            give_back_packages(slot.market_point_id, slot_day(slot), packages)
    ending = (
        WaitingListEntry.status == WAITING,
        WaitingListEntry.slot_id.in_(select(Slot.id).where(Slot.ends_at <= now)),
    )
    for slot_id in db.session.scalars(select(WaitingListEntry.slot_id).where(*ending).distinct()):
        changed.setdefault(slot_id, "waiting_list")
    expired = db.session.execute(
        update(WaitingListEntry)
        .where(*ending)
        .values(status=EXPIRED, resolved_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.flush()
    db.session.expire_all()
    for slot_id, kind in changed.items():
        extra = {"action": "expired"} if kind == "waiting_list" else {}
        record_slot_change(kind, db.session.get(Slot, slot_id), now, **extra)
    return marked, expired


def release_late_arrivals(now: datetime | None = None) -> int:
    """Hand the places of residents who have not arrived to those waiting for them.

    A confirmed booking not checked in NO_SHOW_GRACE_MINUTES after its slot started
    (or after it was made, for a booking made or promoted into a running slot), in a
    slot still running with someone on its waiting list who may take the place,
    becomes ``no_show`` and its place goes to them (a ``promotion`` notice; see
    ``promote``). Otherwise the booking is left alone: freeing the place would help
    nobody and would turn away a late resident whose ticket is still valid.
    Args: now, aware UTC (default now). Returns: the number of bookings released.
    Rule: issue 7 ("freeing a place whose resident has not arrived within the grace").
    """
    now = now or utcnow()
    grace = timedelta(minutes=current_app.config["NO_SHOW_GRACE_MINUTES"])
    someone_waiting = (
        select(WaitingListEntry.id)
        .where(WaitingListEntry.slot_id == Slot.id, WaitingListEntry.status == WAITING)
        .exists()
    )
    late = db.session.execute(
        select(Booking.id, Booking.slot_id, Booking.packages)
        .join(Slot, Booking.slot_id == Slot.id)
        .where(
            Booking.status == CONFIRMED,
            Slot.starts_at <= now - grace,
            Booking.created_at <= now - grace,
            Slot.ends_at > now,
            someone_waiting,
        )
        .order_by(Booking.slot_id, Booking.id)
    ).all()
    released = 0
    for booking_id, slot_id, packages in late:
        slot = db.session.get(Slot, slot_id)
        lock_slot(slot)
        # Under the slot's lock: release only while somebody waiting may take it (the
        # day's stock covering their promotion once this booking's packages are back).
        if not someone_may_take(slot, packages):
            continue
        if transition(Booking, booking_id, CONFIRMED, NO_SHOW):
            void_reminder(booking_id)
            give_back_packages(slot.market_point_id, slot_day(slot), packages)
            free_place(slot, now)
            released += 1
            record_slot_change("no_show", slot, now, booking_id=booking_id)
    return released


def fill_waiting_lists_with_stock(now: datetime | None = None) -> int:
    """Move up waiting lists that a sold-out day left waiting once stock is back.

    On a sold-out day residents join the waiting list of a slot that still has places
    (issue 15). Packages given back by another slot of that day (a cancellation, a
    no-show, a close, a move) cannot promote them at once: that would take this slot's
    lock after the stock row's, against the lock order (``common.locking``). This
    sweep, run by ``jobs.run_timed_work`` every JOBS_TIMED_SECONDS, takes each such
    slot's lock first and fills it from its list while the day's stock covers a
    promotion (``slots.waiting.fill_from_waiting_list``; each promotion reserves its
    packages and is notified).
    Args: now, aware UTC (default now). Returns: residents promoted (count).
    """
    now = now or utcnow()
    someone_waiting = (
        select(WaitingListEntry.id)
        .where(WaitingListEntry.slot_id == Slot.id, WaitingListEntry.status == WAITING)
        .exists()
    )
    # Few rows: free places with people waiting happen on sold-out days only.
    slot_ids = db.session.scalars(
        select(Slot.id)
        .where(
            Slot.booked_count < Slot.capacity,
            Slot.ends_at > now,
            Slot.closed_at.is_(None),
            someone_waiting,
        )
        .order_by(Slot.id)
    ).all()
    promoted = 0
    for slot_id in slot_ids:
        slot = db.session.get(Slot, slot_id)
        if not covers_one_more(slot):  # still sold out: no lock taken
            continue
        lock_slot(slot)
        db.session.refresh(slot)
        promoted += fill_from_waiting_list(slot, now)
    return promoted


@dataclass(frozen=True)
class PurgeCounts:
    """What one ``purge_personal_data`` run erased (counts of rows)."""

    bookings: int
    waiting_entries: int
    residents: int
    idempotency_keys: int


def purge_personal_data(now: datetime | None = None) -> PurgeCounts:
    """Erase residents' personal data RETENTION_DAYS after their slot ended.

    Bookings and waiting-list entries keep their code, slot, status and times (the
    counts supervisors report on) but lose name, phone, NIK digits and the link to the
    resident; residents with nothing left are deleted (their NIK hash with them);
    idempotency keys that old go too, and a notice still owed to a purged booking is
    voided (there is nobody to send it to); a direct notice written before the cut-off
    loses its recipient and text. Safe to repeat.
    Args: now, aware UTC (default now). Returns: PurgeCounts.
    Rule: issue 7 (personal data purged RETENTION_DAYS after the slot); DESIGN.md privacy.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config["RETENTION_DAYS"])
    ended = select(Slot.id).where(Slot.ends_at <= cutoff).scalar_subquery()
    erased = {
        "name": "",
        "phone": "",
        "nik_last4": "",
        "resident_id": None,
        "kk_hash": None,
        "purged_at": now,
    }
    bookings = db.session.execute(
        update(Booking)
        .where(Booking.slot_id.in_(ended), Booking.purged_at.is_(None))
        .values(**erased)
        .execution_options(synchronize_session=False)
    ).rowcount
    entries = db.session.execute(
        update(WaitingListEntry)
        .where(WaitingListEntry.slot_id.in_(ended), WaitingListEntry.purged_at.is_(None))
        .values(**erased)
        .execution_options(synchronize_session=False)
    ).rowcount
    # A proxy's name and NIK go with the booking's personal data (issue 15 part 3).
    db.session.execute(
        delete(BookingProxy)
        .where(
            BookingProxy.booking_id.in_(select(Booking.id).where(Booking.purged_at.is_not(None)))
        )
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        update(Notice)
        .where(
            Notice.status == NOTICE_PENDING,
            Notice.booking_id.in_(select(Booking.id).where(Booking.purged_at.is_not(None))),
        )
        .values(status=NOTICE_VOID)
        .execution_options(synchronize_session=False)
    )
    # A direct notice (a reply, a ballot entry's message) keeps its kind and times but
    # loses its recipient and text RETENTION_DAYS after it was written; one still owed
    # then is void (issues 16, 17).
    db.session.execute(
        update(Notice)
        .where(Notice.booking_id.is_(None), Notice.created_at <= cutoff, Notice.to_phone != "")
        .values(
            to_phone="",
            body="",
            status=case((Notice.status == NOTICE_PENDING, NOTICE_VOID), else_=Notice.status),
        )
        .execution_options(synchronize_session=False)
    )
    # Lock rows no booking or waiting-list entry names any more, first seen before the
    # cut-off. A resident may be booking right now (the row locked, the booking not yet
    # committed): then the delete fails on the foreign key and only this step is undone;
    # the next run deletes the others.
    try:
        with db.session.begin_nested():
            residents = _delete_unnamed(Resident, Resident.id, "resident_id", cutoff)
    except IntegrityError:
        residents = 0
    _delete_unnamed(Household, Household.kk_hash, "kk_hash", cutoff)
    keys = db.session.execute(
        delete(IdempotencyKey)
        .where(IdempotencyKey.created_at <= cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.expire_all()
    return PurgeCounts(bookings, entries, residents, keys)


def _delete_unnamed(model, key, column: str, cutoff: datetime) -> int:
    """Delete the ``model`` lock rows (residents, households) created before ``cutoff``
    whose ``key`` no booking or waiting-list entry names in ``column``; return how many."""
    unused = [
        ~select(Booking.id).where(getattr(Booking, column) == key).exists(),
        ~select(WaitingListEntry.id).where(getattr(WaitingListEntry, column) == key).exists(),
    ]
    return db.session.execute(
        delete(model)
        .where(model.created_at <= cutoff, *unused)
        .execution_options(synchronize_session=False)
    ).rowcount

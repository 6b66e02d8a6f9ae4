"""The per-NIK and per-household booking limits, and the resident and household lock
rows that serialise one person's or one family's bookings.

Rule (DESIGN.md, issue 3): one NIK holds at most BOOKING_LIMIT_PER_NIK active bookings
whose slots start within BOOKING_LIMIT_WINDOW_DAYS of each other; at points with a
household limit, one family card (KK) at most BOOKING_LIMIT_PER_KK.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

from flask import current_app
from sqlalchemy import (
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from common.timeutil import utcnow
from extensions import db
from slots.errors import HouseholdLimitReached, LimitReached
from slots.identity import hash_kk, validate_kk
from slots.models import (
    ACTIVE_STATUSES,
    Booking,
    Household,
    MarketPoint,
    Resident,
    Slot,
    WaitingListEntry,
)


@cache
def _lock_row_upsert(model, key: str, dialect: str, *extra: str):
    """An upsert of ``model`` on its unique ``key`` that bumps ``lock_version`` when the
    row exists: one statement that creates the row or takes its write lock, returning
    its id. Bound values: ``key``, ``created_at`` and each of ``extra``. Resident and
    household rows are the locks that serialise one person's or family's bookings."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    values = {name: bindparam(name) for name in (key, *extra)}
    return (
        insert(model)
        .values(
            **values,
            lock_version=0,
            created_at=bindparam("created_at", type_=model.created_at.type),
        )
        .on_conflict_do_update(
            index_elements=[getattr(model, key)],
            set_={"lock_version": model.lock_version + 1},
        )
        .returning(model.id)
    )


def _resident_upsert(dialect: str):
    return _lock_row_upsert(Resident, "nik_hash", dialect, "nik_last4")


def _household_upsert(dialect: str):
    return _lock_row_upsert(Household, "kk_hash", dialect)


def household_hash(point: MarketPoint, kk: str) -> str | None:
    """The keyed hash of ``kk`` when ``point`` (a MarketPoint, or a row with its
    ``household_limit``) limits bookings per household, else None.

    Raises: InvalidKK (422) at such a point when the KK number is missing or malformed.
    """
    if not point.household_limit:
        return None
    return hash_kk(validate_kk(kk), current_app.config["NIK_HASH_KEY"])


def lock_household(kk_hash: str, now: datetime) -> None:
    """Take the family card's row lock (created on first use): after the resident's, in
    the lock order slot, resident, household."""
    stmt = _household_upsert(db.session.get_bind().dialect.name)
    db.session.execute(stmt, {"kk_hash": kk_hash, "created_at": now})


def check_household(kk_hash: str | None, starts_at: datetime) -> None:
    """Serialise bookings of one family card (``lock_household``) and raise
    HouseholdLimitReached when it holds BOOKING_LIMIT_PER_KK active bookings whose slots
    start within BOOKING_LIMIT_WINDOW_DAYS of ``starts_at``.
    Rule: issue 3, "optionally also per household (KK number) when a point asks for it"."""
    if kk_hash is None:
        return
    lock_household(kk_hash, utcnow())
    if household_held(kk_hash, starts_at) >= current_app.config["BOOKING_LIMIT_PER_KK"]:
        raise HouseholdLimitReached(
            HouseholdLimitReached.default_message,
            limit=current_app.config["BOOKING_LIMIT_PER_KK"],
            window_days=current_app.config["BOOKING_LIMIT_WINDOW_DAYS"],
        )


def household_held(kk_hash: str, starts_at: datetime, exclude: int = 0) -> int:
    """Count the family card's active bookings around ``starts_at`` (the window), not
    counting booking ``exclude`` (0: none)."""
    window = timedelta(days=current_app.config["BOOKING_LIMIT_WINDOW_DAYS"])
    return db.session.scalar(
        select(func.count(Booking.id))
        .join(Slot, Booking.slot_id == Slot.id)
        .where(
            Booking.kk_hash == kk_hash,
            Booking.id != exclude,
            Booking.status.in_(ACTIVE_STATUSES),
            Slot.starts_at > starts_at - window,
            Slot.starts_at < starts_at + window,
        )
    )


def lock_resident(nik_hash: str, last4: str) -> int:
    """Create or touch the resident row of ``nik_hash`` and return its id.

    The upsert takes the resident's row lock (on SQLite, writes hold the database
    lock already), so a second booking by the same NIK waits here until the first has
    committed and then sees it. Lock order everywhere: the booking being cancelled,
    then the slot row, then residents (the waiting list's in line order).
    """
    conn = db.session.connection()
    params = {"nik_hash": nik_hash, "nik_last4": last4, "created_at": utcnow()}
    return conn.execute(_resident_upsert(conn.dialect.name), params).scalar_one()


_HELD_IN_WINDOW = (
    select(func.count(Booking.id))
    .join(Slot, Booking.slot_id == Slot.id)
    .where(
        Booking.resident_id == bindparam("resident_id"),
        Booking.id != bindparam("exclude"),
        Booking.status.in_(ACTIVE_STATUSES),
        Slot.starts_at > bindparam("after", type_=Slot.starts_at.type),
        Slot.starts_at < bindparam("before", type_=Slot.starts_at.type),
    )
)


def holds_place_in(resident_id: int, slot_id: int) -> bool:
    """True when the resident already has an active booking in this slot."""
    return (
        db.session.scalar(
            select(Booking.id).where(
                Booking.resident_id == resident_id,
                Booking.slot_id == slot_id,
                Booking.status.in_(ACTIVE_STATUSES),
            )
        )
        is not None
    )


def held_in_window(resident_id: int, starts_at: datetime, exclude: int = 0) -> int:
    """Count the resident's active bookings whose slots start within
    BOOKING_LIMIT_WINDOW_DAYS (before or after) of ``starts_at``, not counting booking
    ``exclude`` (the one being moved; 0: none)."""
    window = timedelta(days=current_app.config["BOOKING_LIMIT_WINDOW_DAYS"])
    params = {
        "resident_id": resident_id,
        "exclude": exclude,
        "after": starts_at - window,
        "before": starts_at + window,
    }
    return db.session.connection().execute(_HELD_IN_WINDOW, params).scalar()


def check_limit(resident_id: int, starts_at: datetime) -> None:
    """Raise LimitReached when the resident already holds BOOKING_LIMIT_PER_NIK
    bookings around ``starts_at`` (DESIGN.md: per-resident limit)."""
    if held_in_window(resident_id, starts_at) >= current_app.config["BOOKING_LIMIT_PER_NIK"]:
        raise limit_reached()


def limit_reached() -> LimitReached:
    """The LimitReached error, carrying the limit and its window (days)."""
    config = current_app.config
    return LimitReached(
        LimitReached.default_message,
        limit=config["BOOKING_LIMIT_PER_NIK"],
        window_days=config["BOOKING_LIMIT_WINDOW_DAYS"],
    )


def may_take(entry: WaitingListEntry, slot: Slot) -> bool:
    """True when the entry's resident is within the per-NIK limit around ``slot`` and
    holds no place in it already."""
    config = current_app.config
    if entry.kk_hash is not None and (
        household_held(entry.kk_hash, slot.starts_at) >= config["BOOKING_LIMIT_PER_KK"]
    ):
        return False
    limit = config["BOOKING_LIMIT_PER_NIK"]
    return held_in_window(entry.resident_id, slot.starts_at) < limit and not holds_place_in(
        entry.resident_id, slot.id
    )


def check_limits_without(booking: Booking, target: Slot) -> None:
    """Raise LimitReached / HouseholdLimitReached when the booking's resident (or family
    card) would hold too many bookings around ``target`` once it moved there: the
    booking rules of ``slots.booking``, under the same locks, not counting the booking
    being moved."""
    config = current_app.config
    resident = db.session.get(Resident, booking.resident_id)
    lock_resident(resident.nik_hash, resident.nik_last4)
    held = held_in_window(booking.resident_id, target.starts_at, exclude=booking.id)
    if held >= config["BOOKING_LIMIT_PER_NIK"]:
        raise LimitReached(
            LimitReached.default_message,
            limit=config["BOOKING_LIMIT_PER_NIK"],
            window_days=config["BOOKING_LIMIT_WINDOW_DAYS"],
        )
    if booking.kk_hash is not None:
        lock_household(booking.kk_hash, utcnow())
        household = household_held(booking.kk_hash, target.starts_at, booking.id)
        if household >= config["BOOKING_LIMIT_PER_KK"]:
            raise HouseholdLimitReached()

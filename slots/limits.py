"""The per-NIK and per-household booking limits (the resident and household lock rows
that serialise one person's or one family's bookings are taken by ``slots.locks``).

Rule (DESIGN.md, issue 3): one NIK holds at most BOOKING_LIMIT_PER_NIK active bookings
whose slots start within BOOKING_LIMIT_WINDOW_DAYS of each other; at points with a
household limit, one family card (KK) at most BOOKING_LIMIT_PER_KK.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, bindparam, func, select

from common.timeutil import utcnow
from extensions import db
from slots.errors import HouseholdLimitReached, LimitReached
from slots.identity import hash_kk, validate_kk
from slots.locks import lock_household, lock_resident
from slots.models import (
    ACTIVE_STATUSES,
    Booking,
    MarketPoint,
    Resident,
    Slot,
    WaitingListEntry,
)


def household_hash(point: MarketPoint, kk: str) -> str | None:
    """The keyed hash of ``kk`` when ``point`` (a MarketPoint, or a row with its
    ``household_limit``) limits bookings per household, else None.

    Raises: InvalidKK (422) at such a point when the KK number is missing or malformed.
    """
    if not point.household_limit:
        return None
    return hash_kk(validate_kk(kk), current_app.config["NIK_HASH_KEY"])


# The limits' numbers and the bookings they count: one definition, read by the counts
# below and by the one-statement PostgreSQL booking (``slots.booking``).


def nik_limit() -> int:
    """BOOKING_LIMIT_PER_NIK: active bookings one NIK may hold within the window."""
    return current_app.config["BOOKING_LIMIT_PER_NIK"]


def household_limit() -> int:
    """BOOKING_LIMIT_PER_KK: active bookings one family card may hold within the window."""
    return current_app.config["BOOKING_LIMIT_PER_KK"]


def limit_window() -> timedelta:
    """BOOKING_LIMIT_WINDOW_DAYS as a timedelta: a booking counts against a limit when
    its slot starts less than this before or after the slot being booked."""
    return timedelta(days=current_app.config["BOOKING_LIMIT_WINDOW_DAYS"])


def counted_between(after, before):
    """The SQL condition on (Booking joined to its Slot) of a booking that counts against
    a limit: active (ACTIVE_STATUSES), its slot starting strictly between ``after`` and
    ``before`` (SQL expressions or bound parameters)."""
    return and_(
        Booking.status.in_(ACTIVE_STATUSES),
        Slot.starts_at > after,
        Slot.starts_at < before,
    )


def _held_by(holder) -> select:
    """Count of the bookings of ``holder`` (a condition on Booking) that count against a
    limit; bound values ``exclude`` (a booking id, 0: none), ``after`` and ``before``."""
    return (
        select(func.count(Booking.id))
        .join(Slot, Booking.slot_id == Slot.id)
        .where(
            holder,
            Booking.id != bindparam("exclude"),
            counted_between(
                bindparam("after", type_=Slot.starts_at.type),
                bindparam("before", type_=Slot.starts_at.type),
            ),
        )
    )


_HELD_IN_WINDOW = _held_by(Booking.resident_id == bindparam("resident_id"))
_HOUSEHOLD_HELD = _held_by(Booking.kk_hash == bindparam("kk_hash"))


def _window_params(starts_at: datetime, exclude: int) -> dict:
    window = limit_window()
    return {"exclude": exclude, "after": starts_at - window, "before": starts_at + window}


def held_in_window(resident_id: int, starts_at: datetime, exclude: int = 0) -> int:
    """Count the resident's active bookings whose slots start within
    BOOKING_LIMIT_WINDOW_DAYS (before or after) of ``starts_at``, not counting booking
    ``exclude`` (the one being moved; 0: none)."""
    params = {"resident_id": resident_id, **_window_params(starts_at, exclude)}
    return db.session.connection().execute(_HELD_IN_WINDOW, params).scalar()


def household_held(kk_hash: str, starts_at: datetime, exclude: int = 0) -> int:
    """Count the family card's active bookings around ``starts_at`` (the window), not
    counting booking ``exclude`` (0: none)."""
    params = {"kk_hash": kk_hash, **_window_params(starts_at, exclude)}
    return db.session.connection().execute(_HOUSEHOLD_HELD, params).scalar()


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


def limit_reached() -> LimitReached:
    """The LimitReached error, carrying the limit and its window (days)."""
    return LimitReached(
        LimitReached.default_message,
        limit=nik_limit(),
        window_days=current_app.config["BOOKING_LIMIT_WINDOW_DAYS"],
    )


def household_limit_reached() -> HouseholdLimitReached:
    """The HouseholdLimitReached error, carrying the limit and its window (days)."""
    return HouseholdLimitReached(
        HouseholdLimitReached.default_message,
        limit=household_limit(),
        window_days=current_app.config["BOOKING_LIMIT_WINDOW_DAYS"],
    )


def check_limits(
    resident_id: int, kk_hash: str | None, starts_at: datetime, exclude: int = 0
) -> None:
    """The per-NIK and per-household limits of a booking in a slot starting at
    ``starts_at`` (aware UTC), under the resident's lock (taken by the caller, first).

    Args: resident_id; kk_hash, the family card's hash at a point with a household
      limit, else None (then only the NIK is limited); exclude, a booking not to count
      (the one being moved; 0: none).
    Raises: LimitReached when the resident already holds BOOKING_LIMIT_PER_NIK active
      bookings whose slots start within BOOKING_LIMIT_WINDOW_DAYS of ``starts_at``;
      HouseholdLimitReached when the family card holds BOOKING_LIMIT_PER_KK (counted
      under its own lock, taken here after the resident's).
    Rules: DESIGN.md (per-resident limit); issue 3 ("optionally also per household (KK
      number) when a point asks for it").
    """
    if held_in_window(resident_id, starts_at, exclude) >= nik_limit():
        raise limit_reached()
    if kk_hash is not None:
        lock_household(kk_hash, utcnow())
        if household_held(kk_hash, starts_at, exclude) >= household_limit():
            raise household_limit_reached()


def may_take(entry: WaitingListEntry, slot: Slot) -> bool:
    """True when the entry's resident (and family card) is within the limits around
    ``slot`` and holds no place in it already: ``check_limits``' counts, without locks
    (the caller locks the one it promotes and asks again)."""
    if entry.kk_hash is not None and household_held(entry.kk_hash, slot.starts_at) >= (
        household_limit()
    ):
        return False
    return held_in_window(entry.resident_id, slot.starts_at) < nik_limit() and not (
        holds_place_in(entry.resident_id, slot.id)
    )


def check_limits_for_move(booking: Booking, target: Slot) -> None:
    """``check_limits`` for moving ``booking`` to ``target``: the resident's lock, then
    the limits around ``target``'s start, not counting the booking being moved.
    Raises: LimitReached, HouseholdLimitReached."""
    resident = db.session.get(Resident, booking.resident_id)
    lock_resident(resident.nik_hash, resident.nik_last4)
    check_limits(booking.resident_id, booking.kk_hash, target.starts_at, exclude=booking.id)

"""Arrival waves inside a slot: when each booked resident is told to come.

Rule (issue 15 part 2; DESIGN.md "Arrival wave"): a slot is divided into waves of
ARRIVAL_WAVE_MINUTES from its start (the last may be shorter). A booking gets the wave
with the fewest active bookings so far, the earliest on a tie, so 30 bookings in a
30-minute slot arrive 10/10/10. A booking made while its slot runs gets a wave that has
not begun yet (the last one if none is left). ARRIVAL_WAVE_MINUTES = 0 turns waves off:
everyone arrives at the slot's start. The booking's ``arrive_at`` is its wave's start.

Every path that gives a booking a place calls ``place_in_wave`` once the booking row
holds that place: the booking (both paths of ``slots.booking.place_booking``), the
promotion from a waiting list (``slots.places.insert_booking``) and a move
(``slots.staff.move_booking``); assisted booking goes through ``place_booking``. The
one-statement booking on PostgreSQL may instead set the wave in the statement that
confirms its stock (``slots.booking._settle_statement``, one round trip for both): it
writes the same rule, ``chosen_wave``, under the same condition (a statement of its own
after the slot's lock).

Why the count is exact under racing requests: every path has taken its slot's row
lock (the conditional update of ``slot.booked_count``, ``slots.places.take_place`` or
the one-statement booking's ``taken``) before ``place_in_wave`` runs, and keeps it to
its commit. ``place_in_wave`` is a statement of its own, so under READ COMMITTED its
snapshot is taken after that lock was granted, and sees every booking of the slot
committed by a transaction that held the lock before (they committed before
releasing it); a transaction that comes later waits for the lock and sees this one.
So wave choices in one slot are made one after the other, each seeing all earlier
ones. (A CTE inside the one-statement booking would read that statement's snapshot,
taken before the wait for the lock, and could miss bookings committed during it.) On
SQLite a writer holds the whole database, so the same holds trivially.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from flask import current_app
from sqlalchemy import Integer, bindparam, func, literal, select, union_all, update
from sqlalchemy.orm import aliased

from common.timeutil import UTCDateTime
from extensions import db
from slots.models import ACTIVE_STATUSES, Booking


class _Timed(Protocol):
    starts_at: datetime
    ends_at: datetime


def wave_minutes(settings: Mapping[str, Any] | None = None) -> int:
    """Return ARRIVAL_WAVE_MINUTES of ``settings`` (default: the app's config); 0 = off."""
    return (settings if settings is not None else current_app.config)["ARRIVAL_WAVE_MINUTES"]


def wave_starts(slot: _Timed, minutes: int) -> list[datetime]:
    """Return the start (aware UTC) of each arrival wave of ``slot``, earliest first.

    Args: slot, anything with aware UTC ``starts_at``/``ends_at``; minutes, the wave
      length (ARRIVAL_WAVE_MINUTES). Waves run from the slot's start every ``minutes``;
      the last may be shorter. Returns [starts_at] when ``minutes`` is 0 (waves off).
    """
    if minutes <= 0:
        return [slot.starts_at]
    step = timedelta(minutes=minutes)
    starts, at = [], slot.starts_at
    while at < slot.ends_at or not starts:
        starts.append(at)
        at += step
    return starts


def open_waves(slot: _Timed, now: datetime, minutes: int) -> list[datetime]:
    """Return the waves of ``slot`` a booking made at ``now`` may get: those that have
    not begun yet (start after ``now``), or the last wave when none is left. Before the
    slot starts that is every wave. Args as ``wave_starts``; now, aware UTC."""
    starts = wave_starts(slot, minutes)
    return [at for at in starts if at > now] or starts[-1:]


def wave_of(instant: datetime, slot: _Timed, minutes: int) -> int:
    """Return the index (0 = first) of the wave of ``slot`` that ``instant`` (aware UTC)
    falls in: before the slot's start counts as the first wave, after its last wave's
    start as the last. For charts of arrivals per wave."""
    starts = wave_starts(slot, minutes)
    return max(0, sum(1 for at in starts if at <= instant) - 1)


def place_in_wave(booking_id: int, slot: _Timed, now: datetime, written: bool = True) -> datetime:
    """Give booking ``booking_id`` (its row written, its place in ``slot`` taken) its
    arrival wave, and return ``arrive_at`` (aware UTC).

    One UPDATE ... RETURNING: among ``open_waves`` it picks the wave with the fewest
    active bookings of the slot (this one left out), the earliest on a tie
    (``chosen_wave``). Exact under racing requests only when the caller holds the
    slot's row lock (see the module's docstring); every caller does. With waves off, or
    a single wave to choose from, it writes that wave without counting, and with
    nothing to change (``written``: the row was just written with the slot's start, as
    every new booking is) it sends nothing.
    Args: slot with ``id``, aware UTC ``starts_at`` and ``ends_at`` (a Slot or a
    SlotSummary); now, aware UTC; written, False for a row that holds another slot's
    arrival (a move).
    """
    waves = open_waves(slot, now, wave_minutes())
    if written and waves == [slot.starts_at]:
        return slot.starts_at  # waves off: no round trip
    statement = _choose_wave(len(waves))
    params = wave_params(booking_id, slot, waves)
    return db.session.connection().execute(statement, params).scalar_one()


def wave_params(booking_id: int, slot: _Timed, waves: list[datetime]) -> dict[str, Any]:
    """The bound values of ``chosen_wave(len(waves))`` for booking ``booking_id`` in
    ``slot`` (with ``id``), ``waves`` being its ``open_waves``."""
    params: dict[str, Any] = {"wave_booking": booking_id, "wave_slot": slot.id}
    params.update({f"wave_{i}": at for i, at in enumerate(waves)})
    return params


@lru_cache(maxsize=64)
def chosen_wave(count: int) -> Any:
    """The rule as SQL: the start of the wave a booking gets among ``count`` open waves
    (bound ``wave_0`` ..., earliest first), for the booking ``wave_booking`` of slot
    ``wave_slot`` (``wave_params``). A scalar expression to set ``booking.arrive_at``
    to, in ``place_in_wave``'s UPDATE or in a statement that does more in the same
    round trip (``slots.booking``); exact only in a snapshot taken after the slot's
    row lock was had (the module's docstring). Built once per count: on a rush,
    building it anew for every booking costs more than the database's work."""
    at = [bindparam(f"wave_{i}", type_=UTCDateTime()) for i in range(count)]
    if count == 1:
        return at[0]
    wave = union_all(
        *(select(literal(i, Integer()).label("i"), at[i].label("at")) for i in range(count))
    ).subquery("wave")
    other = aliased(Booking)
    booked = (
        select(func.count(other.id))
        .where(
            other.slot_id == bindparam("wave_slot"),
            other.arrive_at == wave.c.at,
            other.status.in_(ACTIVE_STATUSES),
            other.id != bindparam("wave_booking"),
        )
        .correlate(wave)
        .scalar_subquery()
    )
    return select(wave.c.at).order_by(booked, wave.c.i).limit(1).scalar_subquery()


@lru_cache(maxsize=64)
def _choose_wave(count: int):
    """The UPDATE of ``place_in_wave`` for ``count`` open waves, built once per count."""
    return (
        update(Booking)
        .where(Booking.id == bindparam("wave_booking"))
        .values(arrive_at=chosen_wave(count))
        .returning(Booking.arrive_at)
        .execution_options(synchronize_session=False)
    )

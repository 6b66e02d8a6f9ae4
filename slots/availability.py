"""Which slots a resident can see and book: published, at an active point, open.

"Bookable" (DESIGN.md: a slot can be booked from when it is published until it ends)
is written once, in two forms: SQL conditions (``bookable``, and its parts for the
queries that need fewer of them) and the same test on a loaded row
(``check_bookable``, ``visible``). Every path uses these: the booking (both its
statements and the one-statement PostgreSQL booking), the waiting list, the slot
lists of residents and of the desk (``open_slots``), and a move's target.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, select
from sqlalchemy.orm import joinedload

from common.timeutil import local_day_bounds, utcnow, zone
from extensions import db
from slots.errors import BallotRunning, SlotClosed, SlotNotFound
from slots.models import MarketPoint, Slot


def valid_id(value: object) -> bool:
    """True for an int that fits the database's 32-bit id columns."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


# The parts of "bookable", as SQL conditions on Slot; ``now`` is an aware UTC instant
# or a bound parameter.
NOT_CLOSED = Slot.closed_at.is_(None)  # the market has not closed it
# No ballot holds it (issue 16): a balloted day's places go by the draw, not first-come.
NOT_BALLOTED = Slot.ballot_id.is_(None)
AT_ACTIVE_POINT = Slot.market_point_id.in_(select(MarketPoint.id).where(MarketPoint.active))


def published(now):
    """SQL: the slot is published at ``now``."""
    return Slot.published_at <= now


def open_at(now):
    """SQL: the slot takes bookings at ``now`` as far as the slot row tells: published,
    not ended, not closed by the market, not held by a ballot (issue 16) (the point's
    being active is ``bookable``)."""
    return and_(published(now), Slot.ends_at > now, NOT_CLOSED, NOT_BALLOTED)


def bookable(now):
    """SQL: the slot can be booked at ``now``: ``open_at`` and at an active point."""
    return and_(open_at(now), AT_ACTIVE_POINT)


def visible(published_at: datetime, point_active: bool, now: datetime) -> bool:
    """True when a slot published at ``published_at`` at a point that is active or not
    can be seen (and so looked up) at ``now``; else it is "not found"."""
    return published_at <= now and point_active


def get_slot(slot_id: int, now: datetime | None = None) -> Slot:
    """Return the published slot ``slot_id``.

    Raises: SlotNotFound when there is none or it is not published yet.
    """
    now = now or utcnow()
    slot = (
        db.session.get(Slot, slot_id, options=[joinedload(Slot.market_point)])
        if valid_id(slot_id)
        else None
    )
    if slot is None or not visible(slot.published_at, slot.market_point.active, now):
        raise SlotNotFound()
    return slot


def list_slots(point: MarketPoint, day: date, now: datetime | None = None) -> list[Slot]:
    """Return the published slots of ``point`` on local calendar ``day``, by start time.

    Args: day in the point's timezone; now, an aware UTC instant (default: now).
    """
    now = now or utcnow()
    start, end = local_day_bounds(day, point.timezone)
    stmt = (
        select(Slot)
        .where(
            Slot.market_point_id == point.id,
            Slot.starts_at >= start,
            Slot.starts_at < end,
            published(now),
            NOT_CLOSED,
        )
        .order_by(Slot.starts_at)
    )
    return list(db.session.scalars(stmt))


def open_slots(point: MarketPoint, start: datetime, end: datetime, now: datetime) -> list[Slot]:
    """Return the slots of ``point`` starting in [``start``, ``end``) (aware UTC) that
    take bookings at ``now`` (``open_at``), by start time: what the desk can book."""
    stmt = (
        select(Slot)
        .where(
            Slot.market_point_id == point.id,
            Slot.starts_at >= start,
            Slot.starts_at < end,
            open_at(now),
        )
        .order_by(Slot.starts_at)
    )
    return list(db.session.scalars(stmt))


def check_bookable(row, now: datetime) -> None:
    """Raise SlotNotFound (404) unless ``row`` (slot and point, or None) is a published
    slot at an active point, SlotClosed (409) when it has ended by ``now``,
    BallotRunning (409) when a ballot holds it (``row.ballot_id``; issue 16)."""
    if row is None or not visible(row.published_at, row.active, now):
        raise SlotNotFound()
    if row.ends_at <= now:
        raise SlotClosed()
    if row.ballot_id is not None:
        raise BallotRunning()


def slot_local_times(slot: Slot) -> tuple[datetime, datetime]:
    """Return (starts_at, ends_at) of ``slot`` in its market point's timezone."""
    tz = zone(slot.market_point.timezone)
    return slot.starts_at.astimezone(tz), slot.ends_at.astimezone(tz)


@dataclass(frozen=True)
class PointSummary:
    """The market point fields a new booking's answer and ticket need."""

    id: int
    code: str
    name: str
    address: str
    timezone: str  # IANA zone name, e.g. "Asia/Jakarta"


@dataclass(frozen=True)
class SlotSummary:
    """The slot fields a new booking's answer and ticket need (instants aware UTC)."""

    id: int
    starts_at: datetime
    ends_at: datetime
    market_point_id: int
    market_point: PointSummary


def takes_bookings(slot: Slot, now: datetime) -> bool:
    """True when the loaded ``slot`` can be booked (or waited for) at ``now``: the
    ``bookable`` rule on a row (published, not ended, not closed, active point)."""
    return (
        visible(slot.published_at, slot.market_point.active, now)
        and slot.ends_at > now
        and slot.closed_at is None
        and slot.ballot_id is None
    )


def bookable_days(point: MarketPoint, days: list[date], now: datetime) -> dict[date, int]:
    """Count the slots of ``point`` that are ``bookable`` at ``now``, per local day.

    Args: days, consecutive local calendar days in the point's timezone; now, aware UTC.
    Returns: ``{day: count of bookable slots starting that day}`` for every day of
      ``days`` (0 where there is none), in the order given.
    Rule: issue 14 item 10 (the market page opens on the first day with bookable slots
    and shows which days have them); "bookable" is the one rule, ``bookable``.
    """
    counts = dict.fromkeys(days, 0)
    if not days:
        return counts
    start, _ = local_day_bounds(days[0], point.timezone)
    _, end = local_day_bounds(days[-1], point.timezone)
    stmt = select(Slot.starts_at).where(
        Slot.market_point_id == point.id,
        Slot.starts_at >= start,
        Slot.starts_at < end,
        bookable(now),
    )
    tz = zone(point.timezone)
    for starts_at in db.session.scalars(stmt):
        day = starts_at.astimezone(tz).date()
        if day in counts:
            counts[day] += 1
    return counts


def ballot_days(point: MarketPoint, days: list[date], now: datetime) -> set[date]:
    """The local days of ``days`` (consecutive, the point's timezone) on which a ballot
    holds slots of ``point`` that have not ended by ``now`` (aware UTC) and that the
    market has not closed: the market page marks them Undian rather than "0 slots"
    (issue 16: held slots are not ``bookable``, so ``bookable_days`` counts none)."""
    if not days:
        return set()
    start, _ = local_day_bounds(days[0], point.timezone)
    _, end = local_day_bounds(days[-1], point.timezone)
    stmt = select(Slot.starts_at).where(
        Slot.market_point_id == point.id,
        Slot.starts_at >= start,
        Slot.starts_at < end,
        Slot.ballot_id.is_not(None),
        Slot.ends_at > now,
        NOT_CLOSED,
    )
    tz = zone(point.timezone)
    return {starts_at.astimezone(tz).date() for starts_at in db.session.scalars(stmt)}

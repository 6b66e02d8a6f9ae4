"""Which slots a resident can see and book: published, at an active point, open."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    select,
)
from sqlalchemy.orm import joinedload

from common.timeutil import local_day_bounds, utcnow, zone
from extensions import db
from slots.errors import SlotClosed, SlotNotFound
from slots.models import MarketPoint, Slot


def valid_id(value: object) -> bool:
    """True for an int that fits the database's 32-bit id columns."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


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
    if slot is None or slot.published_at > now or not slot.market_point.active:
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
            Slot.published_at <= now,
            Slot.closed_at.is_(None),
        )
        .order_by(Slot.starts_at)
    )
    return list(db.session.scalars(stmt))


def check_bookable(row, now: datetime) -> None:
    """Raise SlotNotFound (404) unless ``row`` (slot and point, or None) is a published
    slot at an active point, SlotClosed (409) when it has ended by ``now``."""
    if row is None or row.published_at > now or not row.active:
        raise SlotNotFound()
    if row.ends_at <= now:
        raise SlotClosed()


def slot_local_times(slot: Slot) -> tuple[datetime, datetime]:
    """Return (starts_at, ends_at) of ``slot`` in its market point's timezone."""
    tz = zone(slot.market_point.timezone)
    return slot.starts_at.astimezone(tz), slot.ends_at.astimezone(tz)

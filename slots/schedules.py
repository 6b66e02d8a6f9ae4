"""Schedules and the slots they make; slots made at once by ``flask slots generate``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import (
    select,
)

from common.audit import Actor, record
from common.timeutil import local_instant, utcnow
from extensions import db
from slots.availability import valid_id
from slots.errors import InvalidSchedule, InvalidSlotRange, SlotOverlap
from slots.locks import lock_market_point
from slots.models import MarketPoint, Schedule, Slot
from slots.places import MAX_CAPACITY
from slots.points import get_point


@dataclass(frozen=True)
class GeneratedSlots:
    """Result of ``generate_slots``: slots made now and slots that already existed."""

    created: list[Slot]
    existing: list[Slot]


def generate_slots(
    point: MarketPoint,
    day: date,
    start: time,
    end: time,
    length_minutes: int,
    capacity: int,
    now: datetime | None = None,
) -> GeneratedSlots:
    """Create back-to-back slots at ``point`` from ``start`` to ``end`` local time on ``day``.

    Idempotent: a slot with the same start and end is kept as it is. Slots
    are published at once (DESIGN.md: generated slots without a publish time).
    Args: length_minutes > 0; capacity >= 0 bookings per slot.
    Returns: GeneratedSlots(created, existing).
    Raises: InvalidSlotRange when end is not after start, the length is not positive,
      or no whole slot fits; SlotOverlap when a new slot would overlap another one.
    """
    now = now or utcnow()
    if length_minutes <= 0 or capacity < 0 or end <= start:
        raise InvalidSlotRange()
    first = local_instant(day, start, point.timezone)
    last = local_instant(day, end, point.timezone)
    step = timedelta(minutes=length_minutes)
    if first + step > last:
        raise InvalidSlotRange()
    lock_market_point(point)
    around = list(
        db.session.scalars(
            select(Slot).where(
                Slot.market_point_id == point.id,
                Slot.starts_at < last,
                Slot.ends_at > first,
            )
        )
    )
    created: list[Slot] = []
    existing: list[Slot] = []
    cursor = first
    while cursor + step <= last:
        window_end = cursor + step
        same = [s for s in around if s.starts_at == cursor and s.ends_at == window_end]
        if same:
            existing.append(same[0])
        elif any(s.starts_at < window_end and s.ends_at > cursor for s in around):
            # An overlapping slot would silently add capacity at the same time.
            raise SlotOverlap()
        else:
            slot = Slot(
                market_point=point,
                starts_at=cursor,
                ends_at=window_end,
                capacity=capacity,
                booked_count=0,
                published_at=now,
            )
            db.session.add(slot)
            created.append(slot)
        cursor = window_end
    db.session.flush()
    return GeneratedSlots(created=created, existing=existing)


@dataclass(frozen=True)
class PlannedSlot:
    """One slot a schedule makes: local date, UTC window, UTC publish instant, and
    whether it exists already (kept) or overlaps another slot (refused)."""

    day: date
    starts_at: datetime
    ends_at: datetime
    publish_at: datetime
    exists: bool
    overlaps: bool


def create_schedule(
    point_code: str,
    *,
    name: str,
    weekdays: str,
    start_time: time,
    end_time: time,
    slot_minutes: int,
    capacity: int,
    valid_from: date,
    valid_until: date,
    publish_days_before: int,
    publish_time: time,
    actor: Actor,
) -> Schedule:
    """Create a schedule at a market point (see ``slots.models.Schedule``).

    Raises: MarketPointNotFound (404); InvalidSchedule (422) with ``fault`` one of
      weekdays, hours, slot_minutes, capacity, dates, publish.
    """
    point = get_point(point_code)
    days = "".join(sorted(set(weekdays)))
    if not days or not set(days) <= set("1234567"):
        raise InvalidSchedule(fault="weekdays")
    if end_time <= start_time:
        raise InvalidSchedule(fault="hours")
    span = (datetime.combine(date.min, end_time) - datetime.combine(date.min, start_time)).seconds
    if not 5 <= slot_minutes <= 24 * 60 or slot_minutes * 60 > span:
        raise InvalidSchedule(fault="slot_minutes")
    if not 0 <= capacity <= MAX_CAPACITY:
        raise InvalidSchedule(fault="capacity")
    if valid_until < valid_from or (valid_until - valid_from).days > 366:
        raise InvalidSchedule(fault="dates")
    # Slots must open for booking before the last of them ends, or nobody could book.
    if not 0 <= publish_days_before <= 60 or (
        publish_days_before == 0 and publish_time >= end_time
    ):
        raise InvalidSchedule(fault="publish")
    schedule = Schedule(
        market_point=point,
        name=name.strip()[:100],
        weekdays=days,
        start_time=start_time,
        end_time=end_time,
        slot_minutes=slot_minutes,
        capacity=capacity,
        valid_from=valid_from,
        valid_until=valid_until,
        publish_days_before=publish_days_before,
        publish_time=publish_time,
        active=True,
    )
    db.session.add(schedule)
    db.session.flush()
    record(
        actor,
        "schedule.create",
        "schedule",
        schedule.id,
        {},
        {
            "weekdays": days,
            "hours": f"{start_time:%H:%M}-{end_time:%H:%M}",
            "slot_minutes": slot_minutes,
            "capacity": capacity,
            "valid": f"{valid_from}..{valid_until}",
            "publish": f"{publish_days_before}d before at {publish_time:%H:%M}",
        },
        point.id,
    )
    return schedule


def publish_instant(schedule: Schedule, day: date) -> datetime:
    """The UTC instant the slots of local ``day`` open for booking: ``publish_time``
    local time, ``publish_days_before`` days before ``day``."""
    tz = schedule.market_point.timezone
    return local_instant(
        day - timedelta(days=schedule.publish_days_before), schedule.publish_time, tz
    )


def plan_schedule(schedule: Schedule) -> list[PlannedSlot]:
    """Return every slot ``schedule`` makes (the preview), without writing anything."""
    point = schedule.market_point
    tz = point.timezone
    first = local_instant(schedule.valid_from, time(0, 0), tz)
    last = local_instant(schedule.valid_until + timedelta(days=1), time(0, 0), tz)
    around = list(
        db.session.scalars(
            select(Slot).where(
                Slot.market_point_id == point.id, Slot.starts_at < last, Slot.ends_at > first
            )
        )
    )
    step = timedelta(minutes=schedule.slot_minutes)
    planned: list[PlannedSlot] = []
    day = schedule.valid_from
    while day <= schedule.valid_until:
        if str(day.isoweekday()) in schedule.weekdays:
            cursor = local_instant(day, schedule.start_time, tz)
            end = local_instant(day, schedule.end_time, tz)
            publish_at = publish_instant(schedule, day)
            while cursor + step <= end:
                window_end = cursor + step
                same = any(s.starts_at == cursor and s.ends_at == window_end for s in around)
                overlaps = not same and any(
                    s.starts_at < window_end and s.ends_at > cursor for s in around
                )
                planned.append(PlannedSlot(day, cursor, window_end, publish_at, same, overlaps))
                cursor = window_end
        day += timedelta(days=1)
    return planned


def get_schedule(schedule_id: int) -> Schedule:
    """Return schedule ``schedule_id``. Raises InvalidSchedule (fault ``unknown``, 404)."""
    schedule = db.session.get(Schedule, schedule_id) if valid_id(schedule_id) else None
    if schedule is None:
        raise InvalidSchedule(fault="unknown", status=404)
    return schedule


def generate_from_schedule(
    schedule_id: int, actor: Actor, now: datetime | None = None
) -> tuple[int, int]:
    """Create the slots ``schedule`` plans, each published at its publish instant.

    Idempotent: slots that exist already are kept (running it twice makes nothing
    twice). Returns (created, existing). Raises InvalidSchedule (404 unknown),
    SlotOverlap (409) when a planned slot overlaps another slot (nothing is written).
    """
    from slots.errors import SlotOverlap

    schedule = get_schedule(schedule_id)
    lock_market_point(schedule.market_point)  # then plan: overlaps are seen
    planned = plan_schedule(schedule)
    if any(p.overlaps for p in planned):
        raise SlotOverlap()
    created = 0
    for slot in planned:
        if slot.exists:
            continue
        db.session.add(
            Slot(
                market_point_id=schedule.market_point_id,
                starts_at=slot.starts_at,
                ends_at=slot.ends_at,
                capacity=schedule.capacity,
                booked_count=0,
                published_at=slot.publish_at,
                schedule_id=schedule.id,
            )
        )
        created += 1
    db.session.flush()
    record(
        actor,
        "schedule.generate",
        "schedule",
        schedule.id,
        {},
        {"created": created, "existing": len(planned) - created},
        schedule.market_point_id,
        now,
    )
    return created, len(planned) - created

"""Running a market operation: points, schedules, capacity, closures, moves.

The admin pages, the admin API and the CLI all call these functions; each one writes
its change and its audit row (``common.audit``) in one transaction and goes through
the same rules as residents' bookings: capacity changes are conditional updates of
the slot row (so a cut racing with bookings can never leave more bookings than
places), closures cancel bookings with a ``slot_closed`` notice each, and freed places
go to the waiting list. Callers commit (``slots.notices.commit_and_deliver``).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update

from common.audit import Actor, record
from common.timeutil import local_day_bounds, local_instant, utcnow
from extensions import db
from slots import service
from slots.errors import (
    AlreadyBooked,
    BookingNotFound,
    BookingNotMovable,
    CapacityBelowBooked,
    HouseholdLimitReached,
    InvalidCapacity,
    InvalidMarketPoint,
    InvalidSchedule,
    LimitReached,
    MarketPointNotFound,
    SlotClosedByMarket,
    SlotFull,
    SlotNotFound,
)
from slots.models import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    NOTICE_PENDING,
    NOTICE_VOID,
    WAITING,
    Booking,
    MarketPoint,
    Notice,
    Resident,
    Schedule,
    Slot,
    WaitingListEntry,
)

MAX_CAPACITY = 10_000


def _slot_for_update(slot_id: int) -> Slot:
    """Return slot ``slot_id`` (published or not) with its row lock taken.

    Raises: SlotNotFound.
    """
    if not service._valid_id(slot_id):
        raise SlotNotFound()
    slot = db.session.get(Slot, slot_id)
    if slot is None:
        raise SlotNotFound()
    service._lock_slot(slot)
    db.session.refresh(slot)
    return slot


# Capacity -----------------------------------------------------------------------


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
    changed = db.session.execute(
        update(Slot)
        .where(Slot.id == slot.id, Slot.booked_count <= capacity)
        .values(capacity=capacity)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(slot)
    if changed != 1:
        raise CapacityBelowBooked(CapacityBelowBooked.default_message, booked=slot.booked_count)
    promoted = _fill_from_waiting_list(slot, now)
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


def _fill_from_waiting_list(slot: Slot, now: datetime) -> int:
    """Give the free places of ``slot`` (row lock held) to its waiting list; return
    how many residents got one."""
    promoted = 0
    while slot.booked_count < slot.capacity and slot.ends_at > now and slot.closed_at is None:
        waiting = db.session.scalar(
            select(WaitingListEntry.id)
            .where(WaitingListEntry.slot_id == slot.id, WaitingListEntry.status == WAITING)
            .limit(1)
        )
        if waiting is None:
            break
        # _promote hands over a place already counted: count it, give it back if unused.
        db.session.execute(
            update(Slot)
            .where(Slot.id == slot.id)
            .values(booked_count=Slot.booked_count + 1)
            .execution_options(synchronize_session=False)
        )
        if service._promote(slot, now) is None:
            db.session.execute(
                update(Slot)
                .where(Slot.id == slot.id)
                .values(booked_count=Slot.booked_count - 1)
                .execution_options(synchronize_session=False)
            )
            db.session.refresh(slot)
            break
        promoted += 1
        db.session.refresh(slot)
    return promoted


# Closing --------------------------------------------------------------------------


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
    for booking in bookings:
        if service.transition(Booking, booking.id, CONFIRMED, CANCELLED, cancelled_at=now):
            cancelled += 1
            service.queue_notice(booking, "slot_closed", now)
            service.void_reminder(booking.id)
            service._record_event("cancellation", booking, slot, now)
    if cancelled:
        db.session.execute(
            update(Slot)
            .where(Slot.id == slot.id)
            .values(booked_count=Slot.booked_count - cancelled)
            .execution_options(synchronize_session=False)
        )
    cleared = db.session.execute(
        update(WaitingListEntry)
        .where(WaitingListEntry.slot_id == slot.id, WaitingListEntry.status == WAITING)
        .values(status=EXPIRED, resolved_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    service._record_slot_change("slot_closed", slot, now)
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


# Moving ---------------------------------------------------------------------------


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
    Returns: the booking. Raises: BookingNotFound, SlotNotFound (404);
      BookingNotMovable, AlreadyBooked, SlotFull, LimitReached, HouseholdLimitReached
      (409). Rule: issue 8.
    """
    now = now or utcnow()
    booking = service.find_booking(code)
    if booking is None:
        raise BookingNotFound(_l("No booking has this code."))
    if not service._valid_id(to_slot_id) or db.session.get(Slot, to_slot_id) is None:
        raise SlotNotFound()
    # The booking's row lock, and where it is now (a concurrent move or cancel that
    # committed first is seen here).
    old_id = db.session.scalar(
        update(Booking)
        .where(Booking.id == booking.id, Booking.status == CONFIRMED)
        .values(status=Booking.status)
        .returning(Booking.slot_id)
        .execution_options(synchronize_session=False)
    )
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
    if booking.resident_id is not None:
        if service._holds_place_in(booking.resident_id, target.id):
            raise AlreadyBooked()
        _check_limits_without(booking, target)
    taken = db.session.execute(service._TAKE_PLACE, {"slot_id": target.id}).rowcount
    if taken != 1:
        raise SlotFull()
    db.session.execute(
        update(Booking)
        .where(Booking.id == booking.id)
        .values(slot_id=target.id)
        .execution_options(synchronize_session=False)
    )
    service._free_place(old, now)
    db.session.refresh(booking)
    _rearm_notice(booking, "slot_moved", now, now)
    remind_at = target.starts_at - timedelta(minutes=current_app.config["REMINDER_MINUTES"])
    if remind_at > now:
        _rearm_notice(booking, "reminder", remind_at, now)
    else:
        _owe_no_reminder(booking, now)
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


def _check_limits_without(booking: Booking, target: Slot) -> None:
    """Raise LimitReached / HouseholdLimitReached when the booking's resident (or family
    card) would hold too many bookings around ``target`` once it moved there: the
    booking rules of ``slots.service``, under the same locks, not counting the booking
    being moved."""
    config = current_app.config
    resident = db.session.get(Resident, booking.resident_id)
    service._lock_resident(resident.nik_hash, resident.nik_last4)
    held = service._held_in_window(booking.resident_id, target.starts_at, exclude=booking.id)
    if held >= config["BOOKING_LIMIT_PER_NIK"]:
        raise LimitReached(
            LimitReached.default_message,
            limit=config["BOOKING_LIMIT_PER_NIK"],
            window_days=config["BOOKING_LIMIT_WINDOW_DAYS"],
        )
    if booking.kk_hash is not None:
        service._lock_household(booking.kk_hash, utcnow())
        household = service._household_held(booking.kk_hash, target.starts_at, booking.id)
        if household >= config["BOOKING_LIMIT_PER_KK"]:
            raise HouseholdLimitReached()


def _rearm_notice(booking: Booking, kind: str, due_at: datetime, now: datetime) -> None:
    """Owe ``kind`` to ``booking`` again from ``due_at``: the one row per booking and
    kind (UNIQUE) is made pending afresh, or created."""
    notice = db.session.scalar(
        select(Notice).where(Notice.booking_id == booking.id, Notice.kind == kind)
    )
    if notice is None:
        service.queue_notice(booking, kind, now, due_at=due_at)
        return
    notice.status = NOTICE_PENDING
    notice.due_at = due_at
    notice.attempts = 0
    notice.queued_at = None
    notice.lease_until = None
    notice.last_error = ""
    db.session.info.setdefault("new_notices", []).append(notice)


def _owe_no_reminder(booking: Booking, now: datetime) -> None:
    """The moved booking is owed no reminder (its new slot starts within
    REMINDER_MINUTES, and the ``slot_moved`` message tells the time): its pending
    reminder is voided, or a void one written so the relay writes none
    (``notices.write_due_reminders``)."""
    notice = db.session.scalar(
        select(Notice).where(Notice.booking_id == booking.id, Notice.kind == "reminder")
    )
    if notice is None:
        db.session.add(
            Notice(booking=booking, kind="reminder", status=NOTICE_VOID, created_at=now, due_at=now)
        )
    elif notice.status == NOTICE_PENDING:
        notice.status = NOTICE_VOID


def book_for_resident(
    slot_id: int,
    fields: tuple[str, str, str],
    kk: str,
    request_id: str,
    actor: Actor,
) -> Booking:
    """Assisted booking: staff book for a resident at the desk, under the same rules and
    limits as ``service.book_slot`` (the phone may be empty: no messages then).

    Args: fields, (name, nik, phone); kk, the family card where the point asks for it;
      request_id, the form's id (a resend books once); actor, the staff member.
    Returns: the booking (flushed); recorded in the audit log with the last four NIK
      digits only, once (a resend adds nothing).
    Raises: what ``service.book_slot_once`` raises.
    """
    fingerprint = service.request_fingerprint({"slot_id": slot_id, "fields": fields, "kk": kk})
    booking, replayed = service.book_slot_once(
        f"assist:{request_id}", fingerprint, slot_id, *fields, phone_optional=True, kk=kk
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


# Market points -------------------------------------------------------------------

# The columns of the shipped data/jakarta_markets.csv: export writes them, import reads them.
POINT_CSV_COLUMNS = (
    "name",
    "address",
    "kecamatan",
    "city",
    "latitude",
    "longitude",
    "kecamatan_code",
    "infopangan_market_id",
    "note",
)
_CODE = re.compile(r"JKT-(\d{1,6})")


def get_point(code: str) -> MarketPoint:
    """Return market point ``code``, active or not. Raises MarketPointNotFound."""
    point = db.session.scalar(select(MarketPoint).where(MarketPoint.code == code))
    if point is None:
        raise MarketPointNotFound()
    return point


@dataclass
class PointFields:
    """Editable fields of a market point, as validated by ``validate_point``."""

    name: str
    address: str
    kecamatan: str
    kecamatan_code: str
    city: str
    safe_limit: int
    timezone: str
    opens_at: time | None
    closes_at: time | None
    household_limit: bool


# A market point's zone is a place's zone ("Asia/Jakarta"), never one that depends on
# how the server is set up ("localtime") or an alias outside the IANA areas.
_ZONE_AREAS = ("Africa/", "America/", "Antarctica/", "Asia/", "Atlantic/", "Australia/")
_ZONE_AREAS += ("Europe/", "Indian/", "Pacific/")


def valid_timezone(name: str) -> bool:
    """True for an IANA zone of a place, such as Asia/Jakarta, Asia/Makassar."""
    import zoneinfo

    return name.startswith(_ZONE_AREAS) and name in zoneinfo.available_timezones()


def validate_point(fields: PointFields) -> PointFields:
    """Check a market point's fields. Raises InvalidMarketPoint with ``fault`` one of
    name, safe_limit, timezone, hours, kecamatan_code."""
    from slots.identity import kecamatan_codes

    if not 2 <= len(fields.name.strip()) <= 200:
        raise InvalidMarketPoint(fault="name")
    if not 1 <= fields.safe_limit <= 100_000:
        raise InvalidMarketPoint(fault="safe_limit")
    if not valid_timezone(fields.timezone):
        raise InvalidMarketPoint(fault="timezone")
    if fields.opens_at and fields.closes_at and fields.closes_at <= fields.opens_at:
        raise InvalidMarketPoint(fault="hours")
    if fields.kecamatan_code and fields.kecamatan_code not in kecamatan_codes():
        raise InvalidMarketPoint(fault="kecamatan_code")
    fields.name = fields.name.strip()
    return fields


def _point_values(point: MarketPoint) -> dict:
    return {
        "name": point.name,
        "address": point.address,
        "kecamatan": point.kecamatan,
        "kecamatan_code": point.kecamatan_code,
        "city": point.city,
        "safe_limit": point.safe_limit,
        "timezone": point.timezone,
        "opens_at": point.opens_at,
        "closes_at": point.closes_at,
        "household_limit": point.household_limit,
        "active": point.active,
    }


def create_point(market_id: int, fields: PointFields, actor: Actor) -> MarketPoint:
    """Create market point ``JKT-<market_id>`` (the InfoPangan numbering of the shipped
    data, so imports and exports keep one code per market).
    Raises: InvalidMarketPoint (422; fault ``code`` when the number is taken or not
    1..999999)."""
    if not isinstance(market_id, int) or not 1 <= market_id <= 999_999:
        raise InvalidMarketPoint(fault="code")
    code = f"JKT-{market_id:03d}"
    if db.session.scalar(select(MarketPoint.id).where(MarketPoint.code == code)) is not None:
        raise InvalidMarketPoint(fault="code")
    validate_point(fields)
    point = MarketPoint(code=code, source_id=market_id, active=True, **vars(fields))
    db.session.add(point)
    db.session.flush()
    record(actor, "point.create", "market_point", code, {}, _point_values(point), point.id)
    return point


def update_point(code: str, fields: PointFields, actor: Actor) -> MarketPoint:
    """Change a market point's fields. Raises MarketPointNotFound, InvalidMarketPoint."""
    point = get_point(code)
    validate_point(fields)
    before = _point_values(point)
    for name, value in vars(fields).items():
        setattr(point, name, value)
    after = _point_values(point)
    changed = {k for k in after if after[k] != before[k]}
    if not changed:
        return point
    record(
        actor,
        "point.update",
        "market_point",
        code,
        {k: before[k] for k in changed},
        {k: after[k] for k in changed},
        point.id,
    )
    return point


def set_point_active(code: str, active: bool, actor: Actor) -> MarketPoint:
    """Deactivate (hidden from residents, no booking) or reactivate a market point.
    Existing bookings stay valid at the gate."""
    point = get_point(code)
    if point.active != active:
        record(
            actor,
            "point.activate" if active else "point.deactivate",
            "market_point",
            code,
            {"active": point.active},
            {"active": active},
            point.id,
        )
        point.active = active
    return point


def set_safe_limit(code: str, safe_limit: int, actor: Actor) -> MarketPoint:
    """Set a point's safe limit (people inside at once). Raises InvalidMarketPoint."""
    point = get_point(code)
    if not isinstance(safe_limit, int) or not 1 <= safe_limit <= 100_000:
        raise InvalidMarketPoint(fault="safe_limit")
    if point.safe_limit != safe_limit:
        record(
            actor,
            "point.safe_limit",
            "market_point",
            code,
            {"safe_limit": point.safe_limit},
            {"safe_limit": safe_limit},
            point.id,
        )
        point.safe_limit = safe_limit
    return point


def export_points_csv() -> str:
    """Every market point as CSV in the shipped data's columns (POINT_CSV_COLUMNS)."""
    from common.text import safe_cell

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(POINT_CSV_COLUMNS)
    for point in db.session.scalars(select(MarketPoint).order_by(MarketPoint.code)):
        match = _CODE.fullmatch(point.code)
        market_id = point.source_id or (int(match.group(1)) if match else "")
        text = [safe_cell(value) for value in (point.name, point.address, point.kecamatan)]
        text.append(safe_cell(point.city))
        # Coordinates are numbers (a minus sign is not a formula here).
        numbers = ["" if v is None else repr(v) for v in (point.latitude, point.longitude)]
        rest = [safe_cell(point.kecamatan_code), market_id, "" if point.active else "inactive"]
        writer.writerow(text + numbers + rest)
    return out.getvalue()


def import_points_csv(text: str, actor: Actor) -> tuple[int, int]:
    """Create or update market points from CSV text in the shipped data's columns.

    Returns (created, updated). Raises InvalidMarketPoint (fault ``csv``, with the
    ``line``) for a missing column or a bad number; nothing is written then.
    """
    from slots.identity import kecamatan_codes

    if "\x00" in text:
        raise InvalidMarketPoint(fault="csv", reason="nul")
    reader = csv.DictReader(io.StringIO(text))
    missing = set(POINT_CSV_COLUMNS) - {"note"} - set(reader.fieldnames or ())
    if missing:
        raise InvalidMarketPoint(fault="csv", missing=sorted(missing))
    config = current_app.config
    created = updated = 0
    seen: set[int] = set()
    for line, row in enumerate(reader, start=2):
        if None in row or any(value is None for value in row.values()):
            raise InvalidMarketPoint(fault="csv", line=line, reason="columns")
        try:
            market_id = int(row["infopangan_market_id"])
            latitude = float(row["latitude"]) if row["latitude"] else None
            longitude = float(row["longitude"]) if row["longitude"] else None
        except (TypeError, ValueError) as exc:
            raise InvalidMarketPoint(fault="csv", line=line) from exc
        code_ok = not row["kecamatan_code"] or row["kecamatan_code"].strip() in kecamatan_codes()
        in_range = (latitude is None or -90 <= latitude <= 90) and (
            longitude is None or -180 <= longitude <= 180
        )  # NaN fails every comparison, so it is out of range too
        if (
            not 1 <= market_id <= 999_999
            or market_id in seen
            or not (row["name"] or "").strip()
            or not code_ok
            or not in_range
        ):
            raise InvalidMarketPoint(fault="csv", line=line)
        seen.add(market_id)
        code = f"JKT-{market_id:03d}"
        point = db.session.scalar(select(MarketPoint).where(MarketPoint.code == code))
        before = _point_values(point) if point else {}
        if point is None:
            point = MarketPoint(
                code=code,
                safe_limit=config["DEFAULT_SAFE_LIMIT"],
                timezone=config["DEFAULT_TIMEZONE"],
                opens_at=time(7, 0),
                closes_at=time(12, 0),
                source_id=market_id,
            )
            db.session.add(point)
            created += 1
        else:
            updated += 1
        point.name = row["name"].strip()[:200]
        point.address = (row["address"] or "").strip()[:300]
        point.kecamatan = (row["kecamatan"] or "").strip()[:100]
        point.kecamatan_code = (row["kecamatan_code"] or "").strip()[:6]
        point.city = (row["city"] or "").strip()[:100]
        point.latitude, point.longitude = latitude, longitude
        if (row.get("note") or "").strip() == "inactive":  # what the export writes
            point.active = False
        db.session.flush()
        record(actor, "point.import", "market_point", code, before, _point_values(point), point.id)
    return created, updated


# Schedules -------------------------------------------------------------------------


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
    schedule = db.session.get(Schedule, schedule_id) if service._valid_id(schedule_id) else None
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
    service.lock_market_point(schedule.market_point)  # then plan: overlaps are seen
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

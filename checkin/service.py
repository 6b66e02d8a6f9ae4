"""Check-in rules and occupancy.

Rules (DESIGN.md, "Check-in rules"): admit only a confirmed booking for this market
point, inside its slot window widened by CHECKIN_EARLY_MINUTES before and
CHECKIN_LATE_MINUTES after; otherwise refuse with a reason code. The first scan wins
(a conditional update), and every scan is logged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update

from accounts.models import User
from checkin.errors import REFUSALS
from checkin.models import ADMITTED, REFUSED, WAIT, Scan
from common import events
from common.errors import Forbidden
from common.timeutil import UTC, local_date, local_day_bounds, utcnow, zone
from extensions import db
from qr.errors import TicketError
from qr.service import verify_ticket
from slots.models import (
    ACTIVE_STATUSES,
    CANCELLED,
    CHECKED_IN,
    CHECKED_OUT,
    CONFIRMED,
    NO_SHOW,
    WAITING,
    Booking,
    MarketPoint,
    Slot,
    WaitingListEntry,
)
from slots.service import find_booking, normalise_code, transition


@dataclass(frozen=True)
class ScanResult:
    """What the gate shows: ``result`` admitted|wait|refused|checked_out, ``reason``
    code ("" when accepted), a plain ``message``, the booking if found, the scan row."""

    result: str
    reason: str
    message: str
    booking: Booking | None
    scan: Scan


def _clock(instant: datetime, point: MarketPoint) -> str:
    return instant.astimezone(zone(point.timezone)).strftime("%H:%M")


def _day(instant: datetime, point: MarketPoint) -> str:
    return instant.astimezone(zone(point.timezone)).strftime("%d-%m-%Y %H:%M")


def _resolve(scanned: str) -> tuple[str, Booking | None, str]:
    """Return (input kind, booking or None, refusal reason or "") for scanned text."""
    code = normalise_code(scanned)
    if code is not None:
        booking = find_booking(code)
        return "code", booking, "" if booking else "unknown_ticket"
    try:
        claims = verify_ticket(scanned)
    except TicketError as exc:
        return "ticket", None, exc.code
    booking = db.session.get(Booking, claims.booking_id)
    if booking is None or booking.slot.market_point_id != claims.market_point_id:
        return "ticket", None, "unknown_ticket"
    return "ticket", booking, ""


def _admitted_scan(booking: Booking) -> Scan | None:
    return db.session.scalar(
        select(Scan)
        .where(
            Scan.booking_id == booking.id,
            Scan.result == ADMITTED,
            Scan.direction == "in",
        )
        .order_by(Scan.scanned_at)
        .limit(1)
    )


def _refusal(booking: Booking, point: MarketPoint, now: datetime) -> tuple[str, dict]:
    """Return (reason, message arguments) refusing ``booking`` now, or ("", {})."""
    slot = booking.slot
    if slot.market_point_id != point.id:
        return "wrong_point", {"point": slot.market_point.name}
    if booking.status == CANCELLED:
        return "cancelled", {}
    if booking.status == NO_SHOW:
        return "no_show", {}
    if booking.status in (CHECKED_IN, CHECKED_OUT):
        first = _admitted_scan(booking)
        when = first.scanned_at if first else booking.checked_in_at or now
        by = first.user.email if first else "?"
        return "already_checked_in", {"time": _day(when, point), "by": by}
    config = current_app.config
    opens = slot.starts_at - timedelta(minutes=config["CHECKIN_EARLY_MINUTES"])
    closes = slot.ends_at + timedelta(minutes=config["CHECKIN_LATE_MINUTES"])
    if opens <= now <= closes:
        return "", {}
    if local_date(slot.starts_at, point.timezone) != local_date(now, point.timezone):
        return "not_today", {"when": _day(slot.starts_at, point)}
    if now < opens:
        return "too_early", {"time": _clock(opens, point)}
    return "too_late", {"time": _clock(slot.ends_at, point)}


def _lock_point(point: MarketPoint) -> None:
    """Serialise admissions at one point: a no-op write that takes the point's row lock
    on PostgreSQL and the write lock on SQLite, so two gates cannot both admit the
    last place under the safe limit."""
    db.session.execute(
        update(MarketPoint)
        .where(MarketPoint.id == point.id)
        .values(safe_limit=MarketPoint.safe_limit)
        .execution_options(synchronize_session=False)
    )


def _log(
    point: MarketPoint,
    user: User,
    booking: Booking | None,
    now: datetime,
    direction: str,
    kind: str,
    result: str,
    reason: str,
    device: str,
) -> Scan:
    scan = Scan(
        scanned_at=now,
        direction=direction,
        market_point_id=point.id,
        booking_id=booking.id if booking else None,
        user_id=user.id,
        device=(device or "")[:100],
        input_kind=kind,
        result=result,
        reason=reason,
    )
    db.session.add(scan)
    db.session.flush()
    return scan


def _message(reason: str, args: dict, booking: Booking | None) -> str:
    if reason:
        return str(REFUSALS[reason]) % args if args else str(REFUSALS[reason])
    return f"{booking.name} · NIK ****{booking.nik_last4}"


def check_in(
    scanned: str,
    point: MarketPoint,
    user: User,
    now: datetime | None = None,
    device: str = "",
) -> ScanResult:
    """Scan a ticket token or booking code at ``point``'s gate and log the scan.

    Args: scanned, the QR payload or a typed booking code; point, where the gate is;
      user, the staff member scanning; now, aware UTC; device, a free-form label.
    Returns: ScanResult with result ``admitted``, ``refused`` (with a reason), or
      ``wait`` (reason ``point_full``: the ticket is valid but the point holds its
      safe limit; the ticket is not used up and admits once someone leaves).
      A refusal is a result, not an exception, so it is logged.
    Raises: Forbidden (403) when ``user`` may not scan at ``point``.
    """
    if not user.can_act_at(point):
        raise Forbidden()
    now = now or utcnow()
    kind, booking, reason = _resolve(scanned or "")
    args: dict = {}
    result = REFUSED
    if booking is not None:
        reason, args = _refusal(booking, point, now)
    inside = 0
    if booking is not None and not reason:
        _lock_point(point)
        inside = inside_now([point.id], now)[point.id]
        if inside >= point.safe_limit:
            result, reason = WAIT, "point_full"
            args = {"inside": inside, "limit": point.safe_limit}
        else:
            # First scan wins: one transaction only moves this booking out of confirmed.
            won = transition(Booking, booking.id, CONFIRMED, CHECKED_IN, checked_in_at=now)
            db.session.refresh(booking)
            if won:
                result = ADMITTED
            else:
                reason, args = _refusal(booking, point, now)
    scan = _log(point, user, booking, now, "in", kind, result, reason, device)
    # Inside now is known under the point's lock: no extra query for the live feed.
    count = None if booking is None or result == REFUSED else inside + (result == ADMITTED)
    _record_scan("check_in" if result == ADMITTED else result, point, scan, booking, count)
    return ScanResult(result, reason, _message(reason, args, booking), booking, scan)


def _record_scan(
    kind: str, point: MarketPoint, scan: Scan, booking: Booking | None, inside: int | None
) -> None:
    """Tell the live feed (after the commit) about a scan: ``kind`` check_in,
    check_out, wait or refused; ``inside`` people inside after it, None if unknown."""
    events.record(
        {
            "kind": kind,
            "point_id": point.id,
            "market_point": point.code,
            "safe_limit": point.safe_limit,
            "inside_now": inside,
            "booking_id": scan.booking_id,
            "slot_id": booking.slot_id if booking is not None else None,
            "direction": scan.direction,
            "reason": scan.reason or None,
            "at": scan.scanned_at.isoformat(),
        }
    )


def check_out(
    scanned: str,
    point: MarketPoint,
    user: User,
    now: datetime | None = None,
    device: str = "",
) -> ScanResult:
    """End a visit: scan a checked-in ticket or code on the way out, and log it.

    Returns: ScanResult with result ``checked_out``, or ``refused`` with reason
      ``not_checked_in``, ``already_checked_out``, ``wrong_point`` or a ticket reason.
      The log row is direction ``out``; its result is ``admitted`` when accepted.
    Raises: Forbidden (403) when ``user`` may not scan at ``point``.
    """
    if not user.can_act_at(point):
        raise Forbidden()
    now = now or utcnow()
    kind, booking, reason = _resolve(scanned or "")
    args: dict = {}
    result = REFUSED
    if booking is not None:
        if booking.slot.market_point_id != point.id:
            reason, args = "wrong_point", {"point": booking.slot.market_point.name}
        else:
            # Under the point's lock, like check_in: the count below then sees every
            # committed scan here and no half-done one, so the live feed's inside_now
            # is what the database holds after this commit.
            _lock_point(point)
            left = transition(Booking, booking.id, CHECKED_IN, CHECKED_OUT, checked_out_at=now)
            db.session.refresh(booking)
            if left:
                result = CHECKED_OUT
            elif booking.status == CHECKED_OUT:
                reason = "already_checked_out"
            else:
                reason = "not_checked_in"
    logged = ADMITTED if result == CHECKED_OUT else REFUSED
    scan = _log(point, user, booking, now, "out", kind, logged, reason, device)
    inside = inside_now([point.id], now)[point.id] if result == CHECKED_OUT else None
    _record_scan("check_out" if result == CHECKED_OUT else result, point, scan, booking, inside)
    return ScanResult(result, reason, _message(reason, args, booking), booking, scan)


# Occupancy ---------------------------------------------------------------------


def inside_now(point_ids: list[int], now: datetime | None = None) -> dict[int, int]:
    """Return {market point id: people inside now} for the given points.

    Inside = checked in, not checked out, and checked in less than DWELL_MINUTES ago
    (DESIGN.md, "Occupancy"). Points with nobody inside map to 0.
    """
    now = now or utcnow()
    since = now - timedelta(minutes=current_app.config["DWELL_MINUTES"])
    rows = db.session.execute(
        select(Slot.market_point_id, func.count(Booking.id))
        .join(Slot, Booking.slot_id == Slot.id)
        .where(
            Slot.market_point_id.in_(point_ids),
            Booking.status == CHECKED_IN,
            Booking.checked_in_at > since,
        )
        .group_by(Slot.market_point_id)
    )
    counts = dict.fromkeys(point_ids, 0)
    counts.update({point_id: count for point_id, count in rows})
    return counts


@dataclass(frozen=True)
class SlotStats:
    """A slot of a day with its counts: ``booked`` (active bookings), ``checked_in``
    (checked in or out since), ``no_show`` and ``waiting`` (on its waiting list)."""

    slot: Slot
    booked: int
    checked_in: int
    no_show: int = 0
    waiting: int = 0

    @property
    def remaining(self) -> int:
        """Places still free to book (count), never negative."""
        return max(self.slot.capacity - self.booked, 0)


def slot_stats(
    points: list[MarketPoint], now: datetime | None = None, day: date | None = None
) -> dict:
    """Return {market point id: [SlotStats of its slots on one day, by start]}.

    The day is ``day`` when given, else the local date of ``now`` (aware UTC), each in
    the point's own timezone. Two queries per timezone, whatever the number of points.
    """
    now = now or utcnow()
    by_zone: dict[str, list[MarketPoint]] = defaultdict(list)
    for point in points:
        by_zone[point.timezone].append(point)
    stats: dict[int, list[SlotStats]] = {point.id: [] for point in points}
    for tz_name, group in by_zone.items():
        start, end = local_day_bounds(day or local_date(now, tz_name), tz_name)
        in_day = (
            Slot.market_point_id.in_([p.id for p in group]),
            Slot.starts_at >= start,
            Slot.starts_at < end,
        )
        checked = Booking.status.in_((CHECKED_IN, CHECKED_OUT))
        rows = db.session.execute(
            select(
                Slot,
                func.count(Booking.id).filter(Booking.status.in_(ACTIVE_STATUSES)),
                func.count(Booking.id).filter(checked),
                func.count(Booking.id).filter(Booking.status == NO_SHOW),
            )
            .outerjoin(Booking, Booking.slot_id == Slot.id)
            .where(*in_day)
            .group_by(Slot.id)
            .order_by(Slot.starts_at)
        )
        waiting = dict(
            db.session.execute(
                select(WaitingListEntry.slot_id, func.count(WaitingListEntry.id))
                .join(Slot, WaitingListEntry.slot_id == Slot.id)
                .where(WaitingListEntry.status == WAITING, *in_day)
                .group_by(WaitingListEntry.slot_id)
            ).all()
        )
        for slot, booked, checked_in, no_show in rows:
            stats[slot.market_point_id].append(
                SlotStats(slot, booked, checked_in, no_show, waiting.get(slot.id, 0))
            )
    return stats


def occupancy(now: datetime | None = None) -> list[dict]:
    """Return one dict per active market point, ordered by city and name.

    Shape: {market_point: {code, name}, inside_now, safe_limit, booked_today,
    checked_in_today} (counts of people and bookings). ``GET /api/v1/occupancy``
    answers exactly this; ``overview`` has more.
    """
    return [
        {
            "market_point": {
                "code": row["market_point"]["code"],
                "name": row["market_point"]["name"],
            },
            **{key: row[key] for key in ("inside_now", "safe_limit")},
            "booked_today": row["booked_today"],
            "checked_in_today": row["checked_in_today"],
        }
        for row in overview(now)
    ]


# The supervisor's overview -------------------------------------------------------

# Gauge colours (issue 6): amber from 80% of the safe limit, red at the limit.
WARN_SHARE = 0.8
# A burst of refused scans at one gate (forged, cancelled or repeated tickets) in this
# many minutes raises an alert; the offline gate sync that will report admissions of
# cancelled tickets does not exist yet, so refusals are the conflicts we can see now.
REFUSED_ALERT_MINUTES = 15
REFUSED_ALERT_COUNT = 5


def level(inside: int, safe_limit: int) -> str:
    """Return the gauge level of ``inside`` people against ``safe_limit``:
    ``ok``, ``warn`` (at least 80%) or ``full`` (at or over the limit)."""
    if inside >= safe_limit:
        return "full"
    return "warn" if inside >= WARN_SHARE * safe_limit else "ok"


def recent_refusals(point_ids: list[int], now: datetime) -> dict[int, int]:
    """Return {market point id: refused scans in the last REFUSED_ALERT_MINUTES}."""
    since = now - timedelta(minutes=REFUSED_ALERT_MINUTES)
    rows = db.session.execute(
        select(Scan.market_point_id, func.count(Scan.id))
        .where(
            Scan.market_point_id.in_(point_ids),
            Scan.scanned_at > since,
            Scan.result == REFUSED,
        )
        .group_by(Scan.market_point_id)
    )
    counts = dict.fromkeys(point_ids, 0)
    counts.update(dict(rows.all()))
    return counts


def active_points(
    city: str = "", kecamatan: str = "", code: str | None = None
) -> list[MarketPoint]:
    """Return active market points, by city and name, optionally only those in
    ``city`` and ``kecamatan`` (exact names; empty means any) or the one ``code``."""
    query = select(MarketPoint).where(MarketPoint.active.is_(True))
    if city:
        query = query.where(MarketPoint.city == city)
    if kecamatan:
        query = query.where(MarketPoint.kecamatan == kecamatan)
    if code is not None:
        query = query.where(MarketPoint.code == code)
    return list(db.session.scalars(query.order_by(MarketPoint.city, MarketPoint.name)))


def overview(now: datetime | None = None, points: list[MarketPoint] | None = None) -> list[dict]:
    """Return the supervisor's row of each point (default: every active point).

    Shape per point: {market_point: {id, code, name, city, kecamatan}, inside_now,
    safe_limit, level (ok|warn|full), booked_today, checked_in_today, no_show_today,
    waiting_today, refused_recent, alerts: [at_limit | refused_scans], slots: [{id,
    starts_at, ends_at (ISO 8601 UTC), capacity, booked, checked_in, no_show, waiting,
    remaining}] (today's slots, by start)}; counts of people and bookings, "today" in
    the point's zone. Five queries in all.
    """
    now = now or utcnow()
    points = active_points() if points is None else points
    ids = [p.id for p in points]
    inside = inside_now(ids, now)
    stats = slot_stats(points, now)
    refused = recent_refusals(ids, now)
    rows = []
    for p in points:
        alerts = []
        if inside[p.id] >= p.safe_limit:
            alerts.append("at_limit")
        if refused[p.id] >= REFUSED_ALERT_COUNT:
            alerts.append("refused_scans")
        day = stats[p.id]
        rows.append(
            {
                "market_point": {
                    "id": p.id,
                    "code": p.code,
                    "name": p.name,
                    "city": p.city,
                    "kecamatan": p.kecamatan,
                },
                "inside_now": inside[p.id],
                "safe_limit": p.safe_limit,
                "level": level(inside[p.id], p.safe_limit),
                "booked_today": sum(s.booked for s in day),
                "checked_in_today": sum(s.checked_in for s in day),
                "no_show_today": sum(s.no_show for s in day),
                "waiting_today": sum(s.waiting for s in day),
                "refused_recent": refused[p.id],
                "alerts": alerts,
                "slots": [
                    {
                        "id": s.slot.id,
                        "starts_at": s.slot.starts_at.isoformat(),
                        "ends_at": s.slot.ends_at.isoformat(),
                        "capacity": s.slot.capacity,
                        "booked": s.booked,
                        "checked_in": s.checked_in,
                        "no_show": s.no_show,
                        "waiting": s.waiting,
                        "remaining": s.remaining,
                    }
                    for s in day
                ],
            }
        )
    return rows


# One point's day -----------------------------------------------------------------

BUCKET_MINUTES = 10


@dataclass(frozen=True)
class PointDay:
    """One market point's day for the detail page.

    ``start``/``end``: the charted window (aware UTC, whole hours local);
    ``slots``: [SlotStats]; ``arrivals``: check-ins per BUCKET_MINUTES bucket from
    ``start``; ``expected``: bookings per bucket (each active booking spread evenly
    over its slot); ``inside``: [(aware UTC instant, people inside from then)], a
    step function starting at ``start``; ``inside_now``: people inside at ``now``;
    ``now``: the instant it was computed at (aware UTC; the charts stop there).
    """

    point: MarketPoint
    day: date
    start: datetime
    end: datetime
    slots: list[SlotStats]
    arrivals: list[int]
    expected: list[float]
    inside: list[tuple[datetime, int]]
    inside_now: int
    now: datetime | None = None


def point_day(point: MarketPoint, day: date, now: datetime | None = None) -> PointDay:
    """Build ``point``'s ``day`` (local date): slots with counts, arrivals per 10
    minutes against bookings, and people inside over the day.

    Inside over the day is recomputed from the bookings' check-in and check-out
    times: a visit lasts from check-in to check-out, or DWELL_MINUTES at most
    (DESIGN.md, "Occupancy"), like ``inside_now``.
    """
    now = now or utcnow()
    slots = slot_stats([point], now, day)[point.id]
    day_start, day_end = local_day_bounds(day, point.timezone)
    visits = db.session.execute(
        select(Booking.checked_in_at, Booking.checked_out_at)
        .join(Slot, Booking.slot_id == Slot.id)
        .where(
            Slot.market_point_id == point.id,
            Booking.checked_in_at >= day_start - timedelta(hours=2),
            Booking.checked_in_at < day_end,
        )
    ).all()
    edges = [s.slot.starts_at for s in slots] + [s.slot.ends_at for s in slots]
    edges += [arrived for arrived, _ in visits]
    tz = zone(point.timezone)
    if edges:
        first = min(edges).astimezone(tz).replace(minute=0, second=0, microsecond=0)
        last = max(edges).astimezone(tz)
        start = max(first.astimezone(UTC), day_start)
        end = min(last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1), day_end)
    else:  # an empty day: the usual opening hours
        start = day_start + timedelta(hours=7)
        end = day_start + timedelta(hours=12)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    bucket = timedelta(minutes=BUCKET_MINUTES)
    count = max(1, -(-(end - start) // bucket))
    arrivals = [0] * count
    for arrived, _ in visits:
        index = (arrived - start) // bucket
        if 0 <= index < count:
            arrivals[index] += 1
    expected = [0.0] * count
    for s in slots:
        length = (s.slot.ends_at - s.slot.starts_at).total_seconds()
        for index in range(count):
            b_start = start + index * bucket
            overlap = min(b_start + bucket, s.slot.ends_at) - max(b_start, s.slot.starts_at)
            if overlap.total_seconds() > 0:
                expected[index] += s.booked * overlap.total_seconds() / length
    dwell = timedelta(minutes=current_app.config["DWELL_MINUTES"])
    changes: dict[datetime, int] = defaultdict(int)
    for arrived, left in visits:
        gone = min(left, arrived + dwell) if left else arrived + dwell
        changes[arrived] += 1
        changes[gone] -= 1
    inside_series: list[tuple[datetime, int]] = []
    level_now = sum(delta for instant, delta in changes.items() if instant <= start)
    inside_series.append((start, level_now))
    for instant in sorted(i for i in changes if start < i < end):
        level_now += changes[instant]
        inside_series.append((instant, level_now))
    return PointDay(
        point=point,
        day=day,
        start=start,
        end=end,
        slots=slots,
        arrivals=arrivals,
        expected=[round(value, 2) for value in expected],
        inside=inside_series,
        inside_now=inside_now([point.id], now)[point.id],
        now=now,
    )

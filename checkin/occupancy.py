"""Occupancy read models: inside now, slot stats, the supervisor's overview, one
point's day, gauge levels and alerts.

Inside now is derived from the bookings' check-in and check-out times (DESIGN.md,
"Occupancy"); nothing here writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from checkin.conflicts import open_conflicts
from checkin.models import REFUSED, GateConflict, Scan
from common.timeutil import UTC, local_date, local_day_bounds, utcnow, zone
from extensions import db
from slots.models import (
    ACTIVE_STATUSES,
    CHECKED_IN,
    CHECKED_OUT,
    NO_SHOW,
    WAITING,
    Booking,
    MarketPoint,
    Slot,
    WaitingListEntry,
)
from slots.stock import StockLevel, stock_levels

# The rules: who counts as inside, and when a point is full ------------------------

# Gauge colours (issue 6): amber from 80% of the safe limit, red at the limit.
WARN_SHARE = 0.8


def dwell(settings: Mapping[str, Any]) -> timedelta:
    """How long a visit counts as inside when nobody scans its check-out:
    DWELL_MINUTES of ``settings`` (the app's config)."""
    return timedelta(minutes=settings["DWELL_MINUTES"])


def visit_end(
    checked_in_at: datetime, checked_out_at: datetime | None, settings: Mapping[str, Any]
) -> datetime:
    """When a visit stops counting as inside (aware UTC): its check-out, or ``dwell``
    after its check-in, whichever comes first (DESIGN.md, "Occupancy").

    A person is inside at ``t`` when ``checked_in_at <= t < visit_end(...)``;
    ``inside_now`` counts exactly these at ``now`` in SQL (a booking still
    ``checked_in`` whose check-in is less than ``dwell`` ago), ``point_day`` over a
    whole day from the same function.
    """
    limit = checked_in_at + dwell(settings)
    return min(checked_out_at, limit) if checked_out_at else limit


def at_safe_limit(inside: int, safe_limit: int) -> bool:
    """True when ``inside`` people fill a point's ``safe_limit`` (counts): the gate
    holds the next valid ticket (``wait``, reason ``point_full``), the gauge shows
    ``full`` and the overview raises ``at_limit`` (DESIGN.md: never more people at a
    point than its limit)."""
    return inside >= safe_limit


def level(inside: int, safe_limit: int) -> str:
    """Return the gauge level of ``inside`` people against ``safe_limit``:
    ``ok``, ``warn`` (at least WARN_SHARE, 80%) or ``full`` (``at_safe_limit``)."""
    if at_safe_limit(inside, safe_limit):
        return "full"
    return "warn" if inside >= WARN_SHARE * safe_limit else "ok"


def inside_now(point_ids: list[int], now: datetime | None = None) -> dict[int, int]:
    """Return {market point id: people inside now} for the given points.

    Inside = checked in, not checked out, and checked in less than DWELL_MINUTES ago:
    ``now`` before the visit's ``visit_end`` (DESIGN.md, "Occupancy"). Points with
    nobody inside map to 0.

    A gate conflict (an offline admission the server refused on merge: the ticket
    was cancelled after the device's last sync, or admitted first elsewhere) is a
    person inside too (issue 14 item 4): from the device's scan until a check-out
    scan of that ticket (``GateConflict.left_at``) or DWELL_MINUTES, the same rule.
    So the safe limit, the overview, the live feed and the charts count them.
    """
    now = now or utcnow()
    # checked_in_at > now - dwell  <=>  now < visit_end for a visit not checked out.
    since = now - dwell(current_app.config)
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
    admitted_anyway = db.session.execute(
        select(GateConflict.market_point_id, func.count(GateConflict.id))
        .join(Scan, GateConflict.scan_id == Scan.id)
        .where(
            GateConflict.market_point_id.in_(point_ids),
            Scan.scanned_at > since,
            (GateConflict.left_at.is_(None)) | (GateConflict.left_at > now),
        )
        .group_by(GateConflict.market_point_id)
    )
    for point_id, count in admitted_anyway:
        counts[point_id] += count
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


def stock_today(points: list[MarketPoint], now: datetime) -> dict[int, StockLevel]:
    """Return each point's stock on its local today (issue 15), keyed by market point
    id; points without a stock setting that day are absent. One query per time zone."""
    by_day: dict[date, list[int]] = defaultdict(list)
    for p in points:
        by_day[local_date(now, p.timezone)].append(p.id)
    levels: dict[int, StockLevel] = {}
    for day, ids in by_day.items():
        levels.update(stock_levels(ids, day))
    return levels


def occupancy(now: datetime | None = None) -> list[dict]:
    """Return one dict per active market point, ordered by city and name.

    Shape: {market_point: {code, name}, inside_now, safe_limit, booked_today,
    checked_in_today, stock: {packages, reserved, handed_out, left} or None (no stock
    set for today; issue 15)} (counts of people, bookings and packages).
    ``GET /api/v1/occupancy`` answers exactly this; ``overview`` has more.
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
            "stock": row["stock"],
        }
        for row in overview(now)
    ]


# The supervisor's overview -------------------------------------------------------

# A burst of refused scans at one gate (forged, cancelled or repeated tickets) in this
# many minutes raises an alert; so does any unresolved gate conflict (an offline
# admission the server would have refused, see ``sync_offline_scans``).
REFUSED_ALERT_MINUTES = 15
REFUSED_ALERT_COUNT = 5


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
    waiting_today, refused_recent, gate_conflicts, alerts: [at_limit | refused_scans |
    gate_conflicts | nearly_sold_out], stock: {packages, reserved, handed_out, left}
    or None (today's stock; ``nearly_sold_out`` from 90% reserved, issue 15), slots:
    [{id, starts_at, ends_at (ISO 8601 UTC), capacity, booked, checked_in, no_show,
    waiting, remaining}] (today's slots, by start)}; counts of
    people and bookings, "today" in the point's zone; ``gate_conflicts`` counts
    unresolved conflicts. Seven queries in all (one more per extra time zone).
    """
    now = now or utcnow()
    points = active_points() if points is None else points
    ids = [p.id for p in points]
    inside = inside_now(ids, now)
    stats = slot_stats(points, now)
    refused = recent_refusals(ids, now)
    unresolved = open_conflicts(ids)
    stock = stock_today(points, now)
    rows = []
    for p in points:
        alerts = []
        if at_safe_limit(inside[p.id], p.safe_limit):
            alerts.append("at_limit")
        if refused[p.id] >= REFUSED_ALERT_COUNT:
            alerts.append("refused_scans")
        if unresolved[p.id]:
            alerts.append("gate_conflicts")
        level_today = stock.get(p.id)
        if level_today is not None and level_today.nearly_sold_out:
            alerts.append("nearly_sold_out")
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
                "gate_conflicts": unresolved[p.id],
                "alerts": alerts,
                "stock": level_today.as_json() if level_today is not None else None,
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
    ``slots``: [SlotStats]; ``arrivals``: check-ins per bucket of ``bucket_minutes``
    from ``start`` (the arrival wave's length, ARRIVAL_WAVE_MINUTES, or BUCKET_MINUTES
    with waves off); ``expected``: bookings told to arrive in each bucket (their
    ``arrive_at``, issue 15: expected arrivals per wave; cancelled ones left out);
    ``inside``: [(aware UTC instant, people inside from then)], a
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
    bucket_minutes: int = BUCKET_MINUTES


def point_day(point: MarketPoint, day: date, now: datetime | None = None) -> PointDay:
    """Build ``point``'s ``day`` (local date): slots with counts, arrivals per 10
    minutes against bookings, and people inside over the day.

    Inside over the day is recomputed from the bookings' check-in and check-out
    times: a visit lasts from check-in to check-out, or DWELL_MINUTES at most
    (DESIGN.md, "Occupancy"), like ``inside_now``; a gate conflict's offline admission
    is an arrival and a visit until its ``left_at`` (issue 14 item 4).
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
    # Offline admissions the server refused are visits too (issue 14 item 4).
    visits += db.session.execute(
        select(Scan.scanned_at, GateConflict.left_at)
        .join(Scan, GateConflict.scan_id == Scan.id)
        .where(
            GateConflict.market_point_id == point.id,
            Scan.scanned_at >= day_start - timedelta(hours=2),
            Scan.scanned_at < day_end,
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
    # A bucket per arrival wave (waves run from each slot's start; slots start on the
    # hour or half hour, so waves of 10 minutes line up with the buckets).
    minutes = current_app.config["ARRIVAL_WAVE_MINUTES"] or BUCKET_MINUTES
    bucket = timedelta(minutes=minutes)
    count = max(1, -(-(end - start) // bucket))
    arrivals = [0] * count
    for arrived, _ in visits:
        index = (arrived - start) // bucket
        if 0 <= index < count:
            arrivals[index] += 1
    expected = [0.0] * count
    told = db.session.scalars(
        select(Booking.arrive_at).where(
            Booking.slot_id.in_([s.slot.id for s in slots]),
            Booking.status.in_((*ACTIVE_STATUSES, NO_SHOW)),
        )
    )
    for arrive_at in told:
        index = (arrive_at - start) // bucket
        if 0 <= index < count:
            expected[index] += 1
    changes: dict[datetime, int] = defaultdict(int)
    for arrived, left in visits:
        changes[arrived] += 1
        changes[visit_end(arrived, left, current_app.config)] -= 1
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
        bucket_minutes=minutes,
    )

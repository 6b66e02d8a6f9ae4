"""Check-in rules and occupancy.

Rules (DESIGN.md, "Check-in rules"): admit only a confirmed booking for this market
point, inside its slot window widened by CHECKIN_EARLY_MINUTES before and
CHECKIN_LATE_MINUTES after; otherwise refuse with a reason code. The first scan wins
(a conditional update), and every scan is logged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update

from accounts.models import User
from checkin.errors import REFUSALS
from checkin.models import ADMITTED, REFUSED, WAIT, Scan
from common.errors import Forbidden
from common.timeutil import local_date, local_day_bounds, utcnow, zone
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
    Booking,
    MarketPoint,
    Slot,
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
    return ScanResult(result, reason, _message(reason, args, booking), booking, scan)


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
    """A slot of today with its booked (active) and checked-in counts."""

    slot: Slot
    booked: int
    checked_in: int


def slot_stats(points: list[MarketPoint], now: datetime | None = None) -> dict:
    """Return {market point id: [SlotStats of its slots today, by start]}.

    "Today" is the local date of ``now`` in each point's own timezone.
    """
    now = now or utcnow()
    by_zone: dict[str, list[MarketPoint]] = defaultdict(list)
    for point in points:
        by_zone[point.timezone].append(point)
    stats: dict[int, list[SlotStats]] = {point.id: [] for point in points}
    for tz_name, group in by_zone.items():
        start, end = local_day_bounds(local_date(now, tz_name), tz_name)
        checked = Booking.status.in_((CHECKED_IN, CHECKED_OUT))
        rows = db.session.execute(
            select(
                Slot,
                func.count(Booking.id).filter(Booking.status.in_(ACTIVE_STATUSES)),
                func.count(Booking.id).filter(checked),
            )
            .outerjoin(Booking, Booking.slot_id == Slot.id)
            .where(
                Slot.market_point_id.in_([p.id for p in group]),
                Slot.starts_at >= start,
                Slot.starts_at < end,
            )
            .group_by(Slot.id)
            .order_by(Slot.starts_at)
        )
        for slot, booked, checked_in in rows:
            stats[slot.market_point_id].append(SlotStats(slot, booked, checked_in))
    return stats


def occupancy(now: datetime | None = None) -> list[dict]:
    """Return one dict per active market point, ordered by city and name.

    Shape: {market_point: {code, name}, inside_now, safe_limit, booked_today,
    checked_in_today} (counts of people and bookings).
    """
    now = now or utcnow()
    points = list(
        db.session.scalars(
            select(MarketPoint)
            .where(MarketPoint.active.is_(True))
            .order_by(MarketPoint.city, MarketPoint.name)
        )
    )
    inside = inside_now([p.id for p in points], now)
    stats = slot_stats(points, now)
    return [
        {
            "market_point": {"code": p.code, "name": p.name},
            "inside_now": inside[p.id],
            "safe_limit": p.safe_limit,
            "booked_today": sum(s.booked for s in stats[p.id]),
            "checked_in_today": sum(s.checked_in for s in stats[p.id]),
        }
        for p in points
    ]

"""Check-in rules and occupancy.

Rules (DESIGN.md, "Check-in rules"): admit only a confirmed booking for this market
point, inside its slot window widened by CHECKIN_EARLY_MINUTES before and
CHECKIN_LATE_MINUTES after; otherwise refuse with a reason code. The first scan wins
(a conditional update), and every scan is logged; a resent nonce is a no-op.
Offline gates queue their scans and merge them later (``sync_offline_scans``); an
offline admission the server would have refused becomes a GateConflict.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from accounts.models import ADMIN, SUPERVISOR, User
from checkin.errors import REFUSALS, NonceReused, NotCheckedIn
from checkin.models import ADMITTED, REFUSED, UNDONE, WAIT, GateConflict, Scan
from common import audit, events
from common.errors import Forbidden, NotFound, ValidationError
from common.timeutil import UTC, local_date, local_day_bounds, utcnow, zone
from extensions import db
from qr.errors import TicketError
from qr.service import public_keys_json, verify_ticket
from slots.codes import normalise_code
from slots.errors import BookingNotFound
from slots.locks import lock_market_point
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
from slots.status import transition


@dataclass(frozen=True)
class ScanResult:
    """What the gate shows: ``result`` admitted|wait|refused|checked_out|undone,
    ``reason`` code ("" when accepted), a plain ``message``, the booking if found, the
    scan row; ``replayed`` when this answers a resent nonce from the log instead of
    acting again; ``details`` JSON-safe facts behind the reason (``already_checked_in``:
    ``checked_in_at`` ISO UTC and ``checked_in_by`` e-mail; ``point_full``: ``inside``
    and ``limit`` counts)."""

    result: str
    reason: str
    message: str
    booking: Booking | None
    scan: Scan
    replayed: bool = False
    details: dict = field(default_factory=dict)
    # People inside after this scan, when the scan counted them (None: not known).
    inside: int | None = None


def _clock(instant: datetime, point: MarketPoint) -> str:
    return instant.astimezone(zone(point.timezone)).strftime("%H:%M")


def _day(instant: datetime, point: MarketPoint) -> str:
    return instant.astimezone(zone(point.timezone)).strftime("%d-%m-%Y %H:%M")


_WITH_POINT = joinedload(Booking.slot).joinedload(Slot.market_point)


def _resolve(scanned: str) -> tuple[str, Booking | None, str]:
    """Return (input kind, booking or None, refusal reason or "") for scanned text."""
    code = normalise_code(scanned)
    if code is not None:
        booking = db.session.scalar(
            select(Booking).where(Booking.code == code).options(_WITH_POINT)
        )
        return "code", booking, "" if booking else "unknown_ticket"
    try:
        claims = verify_ticket(scanned)
    except TicketError as exc:
        return "ticket", None, exc.code
    # One query for the booking, its slot and point (the rules read all three).
    booking = db.session.get(Booking, claims.booking_id, options=[_WITH_POINT])
    if booking is None or booking.slot.market_point_id != claims.market_point_id:
        return "ticket", None, "unknown_ticket"
    return "ticket", booking, ""


def _admitted_scan(booking: Booking) -> Scan | None:
    """The scan that admitted ``booking`` most recently (an undone admission may have
    come before it), or None."""
    return db.session.scalar(
        select(Scan)
        .where(
            Scan.booking_id == booking.id,
            Scan.result == ADMITTED,
            Scan.direction == "in",
        )
        .order_by(Scan.scanned_at.desc(), Scan.id.desc())
        .limit(1)
    )


def _checked_in_details(booking: Booking, now: datetime) -> dict:
    """When and by whom ``booking`` was checked in: {checked_in_at (ISO UTC), checked_in_by}."""
    first = _admitted_scan(booking)
    when = first.scanned_at if first else booking.checked_in_at or now
    return {"checked_in_at": when.isoformat(), "checked_in_by": first.user.email if first else "?"}


def _reason_args(
    reason: str, booking: Booking | None, point: MarketPoint, now: datetime
) -> tuple[dict, dict]:
    """Return (message arguments, details) of refusal ``reason`` for ``booking`` now."""
    if booking is None:
        return {}, {}
    slot = booking.slot
    config = current_app.config
    if reason == "wrong_point":
        return {"point": slot.market_point.name}, {}
    if reason == "already_checked_in":
        details = _checked_in_details(booking, now)
        when = datetime.fromisoformat(details["checked_in_at"])
        return {"time": _day(when, point), "by": details["checked_in_by"]}, details
    if reason == "not_today":
        return {"when": _day(slot.starts_at, point)}, {}
    if reason == "too_early":
        opens = slot.starts_at - timedelta(minutes=config["CHECKIN_EARLY_MINUTES"])
        return {"time": _clock(opens, point)}, {}
    if reason == "too_late":
        return {"time": _clock(slot.ends_at, point)}, {}
    if reason == "point_full":
        inside = inside_now([point.id], now)[point.id]
        details = {"inside": inside, "limit": point.safe_limit}
        return details, details
    return {}, {}


def _refusal_reason(booking: Booking, point: MarketPoint, now: datetime) -> str:
    """Return the reason to refuse checking ``booking`` in at ``point`` now, or ""."""
    slot = booking.slot
    if slot.market_point_id != point.id:
        return "wrong_point"
    if booking.status == CANCELLED:
        return "cancelled"
    if booking.status == NO_SHOW:
        return "no_show"
    if booking.status in (CHECKED_IN, CHECKED_OUT):
        return "already_checked_in"
    config = current_app.config
    opens = slot.starts_at - timedelta(minutes=config["CHECKIN_EARLY_MINUTES"])
    closes = slot.ends_at + timedelta(minutes=config["CHECKIN_LATE_MINUTES"])
    if opens <= now <= closes:
        return ""
    if local_date(slot.starts_at, point.timezone) != local_date(now, point.timezone):
        return "not_today"
    return "too_early" if now < opens else "too_late"


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
    nonce: str,
    synced_at: datetime | None = None,
) -> Scan:
    scan = Scan(
        scanned_at=now,
        direction=direction,
        market_point_id=point.id,
        booking_id=booking.id if booking else None,
        user_id=user.id,
        device=device,
        input_kind=kind,
        result=result,
        reason=reason,
        nonce=nonce,
        synced_at=synced_at,
    )
    db.session.add(scan)
    db.session.flush()
    return scan


def _message(reason: str, args: dict, booking: Booking | None) -> str:
    if reason:
        return str(REFUSALS[reason]) % args if args else str(REFUSALS[reason])
    if booking is None:
        return ""
    return f"{booking.name} · NIK ****{booking.nik_last4}"


def _device(device: str | None) -> str:
    """The device label as stored (at most 100 characters)."""
    return (device or "")[:100]


def _nonce(nonce: str | None) -> str:
    """The client's nonce, or a fresh server-made one for a client that sent none."""
    return nonce or f"srv-{uuid.uuid4().hex}"


def logged_scan(user: User, device: str, nonce: str | None) -> Scan | None:
    """Return the scan ``user`` already logged from ``device`` with ``nonce``, or None."""
    if not nonce:
        return None
    return db.session.scalar(
        select(Scan).where(
            Scan.user_id == user.id, Scan.device == _device(device), Scan.nonce == nonce
        )
    )


def _same_request(earlier: Scan, direction: str, scanned: str) -> None:
    """A nonce names one request: the same direction and the same booking (or the same
    unknown ticket). Raises NonceReused (409) for another request under it, which a
    replay would answer with someone else's result."""
    _kind, booking, _reason = _resolve(scanned or "")
    if earlier.direction != direction or earlier.booking_id != (booking.id if booking else None):
        raise NonceReused()


def replay(scan: Scan, now: datetime | None = None) -> ScanResult:
    """Answer a resent scan from its log row: the same result and reason, nothing done.

    Args: scan, the logged row; now (aware UTC) for the wording of reasons that
      describe the present (``point_full``'s count).
    Returns: ScanResult with ``replayed`` True; result ``checked_out`` for an accepted
      check-out, as the first answer said.
    """
    now = now or utcnow()
    booking, point = scan.booking, scan.market_point
    result = scan.result
    if scan.direction == "out" and result == ADMITTED:
        result = CHECKED_OUT
    args, details = _reason_args(scan.reason, booking, point, now) if scan.reason else ({}, {})
    return ScanResult(
        result, scan.reason, _message(scan.reason, args, booking), booking, scan, True, details
    )


def check_in(
    scanned: str,
    point: MarketPoint,
    user: User,
    now: datetime | None = None,
    device: str = "",
    nonce: str | None = None,
    *,
    enforce_limit: bool = True,
    synced_at: datetime | None = None,
) -> ScanResult:
    """Scan a ticket token or booking code at ``point``'s gate and log the scan.

    Args: scanned, the QR payload or a typed booking code; point, where the gate is;
      user, the staff member scanning; now, aware UTC (the moment of the scan; for an
      offline scan, when the device scanned it); device, a free-form label (first 100
      characters kept); nonce, the client's id of this scan (<= 64 characters): the
      same user, device and nonce again answers the first result and does nothing;
      enforce_limit, False for an offline admission being merged (the person is
      already inside: the safe limit can no longer turn them away); synced_at, when an
      offline scan reached the server.
    Returns: ScanResult with result ``admitted``, ``refused`` (with a reason), or
      ``wait`` (reason ``point_full``: the ticket is valid but the point holds its
      safe limit; the ticket is not used up and admits once someone leaves).
      A refusal is a result, not an exception, so it is logged.
    Raises: Forbidden (403) when ``user`` may not scan at ``point``. Two concurrent
      requests with one nonce: the second's flush raises IntegrityError (the unique
      constraint); the caller rolls back and answers ``replay`` of the first.
    """
    if not user.can_act_at(point):
        raise Forbidden()
    now = now or utcnow()
    device = _device(device)
    earlier = logged_scan(user, device, nonce)
    if earlier is not None:
        _same_request(earlier, "in", scanned)
        return replay(earlier, now)
    kind, booking, reason = _resolve(scanned or "")
    result = REFUSED
    if booking is not None:
        reason = _refusal_reason(booking, point, now)
    inside = 0
    if booking is not None and not reason:
        lock_market_point(point)
        inside = inside_now([point.id], now)[point.id]
        if enforce_limit and inside >= point.safe_limit:
            result, reason = WAIT, "point_full"
        else:
            # First scan wins: one transaction only moves this booking out of confirmed.
            won = transition(Booking, booking.id, CONFIRMED, CHECKED_IN, checked_in_at=now)
            if won:
                # What the update wrote, without reading the row back.
                set_committed_value(booking, "status", CHECKED_IN)
                set_committed_value(booking, "checked_in_at", now)
                result = ADMITTED
            else:
                db.session.refresh(booking)  # another gate won: read what it wrote
                reason = _refusal_reason(booking, point, now)
    scan = _log(
        point, user, booking, now, "in", kind, result, reason, device, _nonce(nonce), synced_at
    )
    # Inside now is known under the point's lock: no extra query for the live feed.
    count = None if booking is None or result == REFUSED else inside + (result == ADMITTED)
    _record_scan("check_in" if result == ADMITTED else result, point, scan, booking, count)
    if reason == "point_full":
        args = details = {"inside": inside, "limit": point.safe_limit}
    else:
        args, details = _reason_args(reason, booking, point, now)
    return ScanResult(
        result, reason, _message(reason, args, booking), booking, scan, False, details, count
    )


def _record_scan(
    kind: str, point: MarketPoint, scan: Scan, booking: Booking | None, inside: int | None
) -> None:
    """Tell the live feed (after the commit) about a scan: ``kind`` check_in,
    check_out, wait, refused or undo; ``inside`` people inside after it, None if unknown."""
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
    nonce: str | None = None,
    *,
    synced_at: datetime | None = None,
) -> ScanResult:
    """End a visit: scan a checked-in ticket or code on the way out, and log it.

    Args: as ``check_in`` (a resent nonce answers the first result).
    Returns: ScanResult with result ``checked_out``, or ``refused`` with reason
      ``not_checked_in``, ``already_checked_out``, ``wrong_point`` or a ticket reason.
      The log row is direction ``out``; its result is ``admitted`` when accepted.
    Raises: Forbidden (403) when ``user`` may not scan at ``point``.
    """
    if not user.can_act_at(point):
        raise Forbidden()
    now = now or utcnow()
    device = _device(device)
    earlier = logged_scan(user, device, nonce)
    if earlier is not None:
        _same_request(earlier, "out", scanned)
        return replay(earlier, now)
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
            lock_market_point(point)
            left = transition(Booking, booking.id, CHECKED_IN, CHECKED_OUT, checked_out_at=now)
            db.session.refresh(booking)
            if left:
                result = CHECKED_OUT
            elif booking.status == CHECKED_OUT:
                reason = "already_checked_out"
            else:
                reason = "not_checked_in"
    logged = ADMITTED if result == CHECKED_OUT else REFUSED
    scan = _log(
        point, user, booking, now, "out", kind, logged, reason, device, _nonce(nonce), synced_at
    )
    inside = inside_now([point.id], now)[point.id] if result == CHECKED_OUT else None
    _record_scan("check_out" if result == CHECKED_OUT else result, point, scan, booking, inside)
    return ScanResult(result, reason, _message(reason, args, booking), booking, scan)


def undo_check_in(
    scanned: str, user: User, now: datetime | None = None, device: str = ""
) -> ScanResult:
    """Undo a check-in made in error: the booking is ``confirmed`` again (its ticket
    admits once more) and the undo is logged as a scan with result ``undone``.

    Args: scanned, the booking code or ticket of a checked-in booking; user, a
      supervisor or admin (the issue: staff cannot undo); now, aware UTC.
    Returns: ScanResult with result ``undone`` and no reason.
    Raises: Forbidden (403) for staff; BookingNotFound (404) when nothing matches;
      NotCheckedIn (409) when the booking is not checked in now (never, already undone,
      or checked out: a finished visit is history, not an error to undo).
    """
    if user.role not in (SUPERVISOR, ADMIN):
        raise Forbidden()
    now = now or utcnow()
    kind, booking, _reason = _resolve(scanned or "")
    if booking is None:
        raise BookingNotFound()
    point = booking.slot.market_point
    checked_in_at = booking.checked_in_at
    if not transition(Booking, booking.id, CHECKED_IN, CONFIRMED, checked_in_at=None):
        raise NotCheckedIn()
    db.session.refresh(booking)
    # A check-in override: in the audit log with the admin actions (issue 8).
    audit.record(
        audit.Actor.of(user),
        "checkin.undo",
        "booking",
        booking.code,
        {"status": CHECKED_IN, "checked_in_at": checked_in_at},
        {"status": CONFIRMED},
        point.id,
        now,
    )
    scan = _log(point, user, booking, now, "in", kind, UNDONE, "", _device(device), _nonce(None))
    _record_scan("undo", point, scan, booking, inside_now([point.id], now)[point.id])
    return ScanResult(UNDONE, "", _message("", {}, booking), booking, scan)


# Offline gates -------------------------------------------------------------------

# A gate that was offline sends at most this many scans per request (a day at a busy
# gate is a few hundred); more is refused whole, so one request stays short.
MAX_SYNC_SCANS = 500
# Scans are merged up to this long after they were made (older ones are answered
# ``rejected``); a scan stamped in the future (a device clock running fast) counts as
# made when it arrives.
SYNC_MAX_AGE = timedelta(days=7)


@dataclass(frozen=True)
class OfflineScan:
    """One scan a gate made while offline, as it queued it.

    ``nonce`` its id; ``scanned_at`` aware UTC; ``scanned`` the token or code;
    ``direction`` in|out; ``local_result`` what the device showed: admitted, refused,
    wait or checked_out; ``local_reason`` the device's refusal reason ("" if none).
    """

    nonce: str
    scanned_at: datetime
    scanned: str
    direction: str
    local_result: str
    local_reason: str = ""


def _conflict(point: MarketPoint, scan: Scan, booking: Booking | None, kind: str, now: datetime):
    db.session.add(
        GateConflict(
            detected_at=now,
            market_point_id=point.id,
            scan_id=scan.id,
            booking_id=booking.id if booking else None,
            kind=kind,
        )
    )


def _synced(result: ScanResult, nonce: str, conflict: str = "") -> dict:
    return {
        "nonce": nonce,
        "result": result.result,
        "reason": result.reason or None,
        "message": result.message,
        "replayed": result.replayed,
        "conflict": conflict or None,
    }


def sync_offline_scans(
    scans: list[OfflineScan],
    point: MarketPoint,
    user: User,
    device: str,
    now: datetime | None = None,
) -> list[dict]:
    """Merge the scans an offline gate queued, oldest first, as if made when scanned.

    Each scan is applied at its ``scanned_at`` with the usual rules and first-scan-wins
    (whoever reaches the server first keeps the admission). An offline admission is
    applied without the safe limit (the person is already inside); when the server
    refuses it (cancelled after the device's last sync, admitted first at another
    gate, no-show, ...) the scan is logged as refused and a GateConflict is recorded
    for the supervisor. A scan the device refused or held back is only logged, with
    the device's answer. A nonce seen before is answered from the log (``replayed``).

    Args: scans, at most MAX_SYNC_SCANS; point, the gate's point; user, who scanned;
      device, the gate's label; now, aware UTC, the merge time.
    Returns: one dict per scan, in the order given: {nonce, result, reason, message,
      replayed, conflict (the conflict's kind or None)}.
    Raises: Forbidden (403) when ``user`` may not scan at ``point``; ValidationError
      (422 ``batch_too_large``) over MAX_SYNC_SCANS; a concurrent resend of one nonce
      raises IntegrityError (the caller rolls back and runs the merge again, which
      then replays).
    """
    if not user.can_act_at(point):
        raise Forbidden()
    if len(scans) > MAX_SYNC_SCANS:
        raise ValidationError(
            f"Send at most {MAX_SYNC_SCANS} scans at once.", code="batch_too_large"
        )
    now = now or utcnow()
    device = _device(device)
    answers: dict[int, dict] = {}
    order = sorted(range(len(scans)), key=lambda i: scans[i].scanned_at)
    for index in order:
        item = scans[index]
        earlier = logged_scan(user, device, item.nonce)
        if earlier is not None:
            conflict = db.session.scalar(
                select(GateConflict.kind).where(GateConflict.scan_id == earlier.id)
            )
            answers[index] = _synced(replay(earlier, now), item.nonce, conflict or "")
            continue
        at = item.scanned_at
        if item.direction == "out":
            if item.local_result == CHECKED_OUT:
                result = check_out(item.scanned, point, user, at, device, item.nonce, synced_at=now)
            else:
                result = _log_local(item, point, user, device, now)
            answers[index] = _synced(result, item.nonce)
        elif item.local_result == ADMITTED:
            result = check_in(
                item.scanned, point, user, at, device, item.nonce,
                enforce_limit=False, synced_at=now,
            )  # fmt: skip
            conflict = result.reason if result.result == REFUSED else ""
            if conflict:
                _conflict(point, result.scan, result.booking, conflict, now)
            answers[index] = _synced(result, item.nonce, conflict)
        else:
            answers[index] = _synced(_log_local(item, point, user, device, now), item.nonce)
    return [answers[i] for i in range(len(scans))]


def _log_local(
    item: OfflineScan, point: MarketPoint, user: User, device: str, now: datetime
) -> ScanResult:
    """Log a scan the offline device refused or held back, with the device's answer;
    nothing changes. Unknown reason codes from a device are logged as ``offline``."""
    kind, booking, _reason = _resolve(item.scanned or "")
    result = WAIT if item.local_result == WAIT else REFUSED
    reason = item.local_reason if item.local_reason in REFUSALS else "offline"
    if result == WAIT:
        reason = "point_full"
    scan = _log(
        point, user, booking, item.scanned_at, item.direction, kind, result, reason,
        device, item.nonce, now,
    )  # fmt: skip
    message = str(REFUSALS.get(reason, "")) if reason != "point_full" else ""
    if "%(" in message:
        message = message.split("%(")[0].rstrip(" :")
    return ScanResult(result, reason, message, booking, scan)


def gate_snapshot(point: MarketPoint, now: datetime | None = None) -> dict:
    """What an offline gate needs to decide alone: the keys, the rules and the point's
    bookings from today to BOOKING_DAYS_AHEAD (local), cancellations among them.

    Returns: {server_time, market_point: {id, code, name, timezone, safe_limit},
      checkin_early_minutes, checkin_late_minutes, dwell_minutes, inside_now,
      keys: [as GET /api/v1/keys], bookings: [{id, code, status, starts_at, ends_at,
      checked_in_at}], cancelled: [booking ids]}; instants ISO 8601 UTC. Names, phones
      and NIKs are left out: the gate shows them when online.
    """
    now = now or utcnow()
    start, _end = local_day_bounds(local_date(now, point.timezone), point.timezone)
    rows = db.session.execute(
        select(
            Booking.id,
            Booking.code,
            Booking.status,
            Booking.checked_in_at,
            Slot.starts_at,
            Slot.ends_at,
        )
        .join(Slot, Booking.slot_id == Slot.id)
        .where(
            Slot.market_point_id == point.id,
            Slot.starts_at >= start,
            # Today and the days residents can book ahead: a booking the market moved
            # to a later day is known, so its old ticket is refused offline too.
            Slot.starts_at < start + timedelta(days=current_app.config["BOOKING_DAYS_AHEAD"] + 1),
        )
        .order_by(Booking.id)
    ).all()
    config = current_app.config
    return {
        "server_time": now.isoformat(),
        "market_point": {
            "id": point.id,
            "code": point.code,
            "name": point.name,
            "timezone": point.timezone,
            "safe_limit": point.safe_limit,
        },
        "checkin_early_minutes": config["CHECKIN_EARLY_MINUTES"],
        "checkin_late_minutes": config["CHECKIN_LATE_MINUTES"],
        "dwell_minutes": config["DWELL_MINUTES"],
        "inside_now": inside_now([point.id], now)[point.id],
        "keys": public_keys_json(),
        "bookings": [
            {
                "id": row.id,
                "code": row.code,
                "status": row.status,
                "starts_at": row.starts_at.isoformat(),
                "ends_at": row.ends_at.isoformat(),
                "checked_in_at": row.checked_in_at.isoformat() if row.checked_in_at else None,
            }
            for row in rows
        ],
        "cancelled": [row.id for row in rows if row.status == CANCELLED],
    }


def conflicts(point: MarketPoint, since: datetime) -> list[GateConflict]:
    """Return ``point``'s gate conflicts detected since ``since`` (aware UTC), newest first."""
    return list(
        db.session.scalars(
            select(GateConflict)
            .where(GateConflict.market_point_id == point.id, GateConflict.detected_at >= since)
            .order_by(GateConflict.detected_at.desc(), GateConflict.id.desc())
        )
    )


def unresolved_before(point: MarketPoint, before: datetime) -> list[GateConflict]:
    """Return ``point``'s conflicts detected before ``before`` and still unresolved."""
    return list(
        db.session.scalars(
            select(GateConflict)
            .where(
                GateConflict.market_point_id == point.id,
                GateConflict.detected_at < before,
                GateConflict.resolved_at.is_(None),
            )
            .order_by(GateConflict.detected_at.desc())
        )
    )


def open_conflicts(point_ids: list[int]) -> dict[int, int]:
    """Return {market point id: gate conflicts no supervisor has resolved yet}."""
    rows = db.session.execute(
        select(GateConflict.market_point_id, func.count(GateConflict.id))
        .where(GateConflict.market_point_id.in_(point_ids), GateConflict.resolved_at.is_(None))
        .group_by(GateConflict.market_point_id)
    )
    counts = dict.fromkeys(point_ids, 0)
    counts.update(dict(rows.all()))
    return counts


def resolve_conflict(conflict_id: int, user: User, now: datetime | None = None) -> GateConflict:
    """Mark a gate conflict as dealt with by ``user`` (a supervisor or admin).

    Raises: Forbidden for staff; NotFound (404 ``conflict_not_found``) for an unknown id.
    Resolving twice keeps the first resolution.
    """
    if user.role not in (SUPERVISOR, ADMIN):
        raise Forbidden()
    conflict = db.session.get(GateConflict, conflict_id) if 0 < conflict_id < 2**31 else None
    if conflict is None:
        raise NotFound(code="conflict_not_found")
    if conflict.resolved_at is None:
        conflict.resolved_at = now or utcnow()
        conflict.resolved_by_id = user.id
        audit.record(
            audit.Actor.of(user),
            "conflict.resolve",
            "gate_conflict",
            conflict.id,
            {"kind": conflict.kind, "resolved_at": None},
            {"resolved_at": conflict.resolved_at},
            conflict.market_point_id,
            conflict.resolved_at,
        )
        db.session.flush()
    return conflict


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
# many minutes raises an alert; so does any unresolved gate conflict (an offline
# admission the server would have refused, see ``sync_offline_scans``).
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
    waiting_today, refused_recent, gate_conflicts, alerts: [at_limit | refused_scans |
    gate_conflicts], slots: [{id, starts_at, ends_at (ISO 8601 UTC), capacity, booked,
    checked_in, no_show, waiting, remaining}] (today's slots, by start)}; counts of
    people and bookings, "today" in the point's zone; ``gate_conflicts`` counts
    unresolved conflicts. Six queries in all.
    """
    now = now or utcnow()
    points = active_points() if points is None else points
    ids = [p.id for p in points]
    inside = inside_now(ids, now)
    stats = slot_stats(points, now)
    refused = recent_refusals(ids, now)
    unresolved = open_conflicts(ids)
    rows = []
    for p in points:
        alerts = []
        if inside[p.id] >= p.safe_limit:
            alerts.append("at_limit")
        if refused[p.id] >= REFUSED_ALERT_COUNT:
            alerts.append("refused_scans")
        if unresolved[p.id]:
            alerts.append("gate_conflicts")
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

"""Offline gates: the snapshot a gate decides alone with, and the merge of its scans.

A gate that loses the network keeps scanning with ``gate_snapshot`` (keys, rules,
the point's bookings) and queues its scans; ``sync_offline_scans`` merges them later
through the same scanning rules. An offline admission the server would have refused
becomes a GateConflict (``checkin.conflicts``) for a supervisor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from accounts.models import User
from checkin.conflicts import record_conflict
from checkin.errors import REFUSALS
from checkin.models import ADMITTED, REFUSED, WAIT, GateConflict
from checkin.occupancy import inside_now
from checkin.scanning import (
    ScanResult,
    check_in,
    check_out,
    device_label,
    log_scan,
    logged_scan,
    replay,
    resolve_scanned,
)
from common.errors import Forbidden, ValidationError
from common.timeutil import local_date, local_day_bounds, utcnow
from extensions import db
from qr.service import public_keys_json
from slots.models import CANCELLED, CHECKED_OUT, Booking, BookingProxy, MarketPoint, Slot
from slots.window import grace_minutes

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
    device = device_label(device)
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
                record_conflict(point, result.scan, result.booking, conflict, now)
            answers[index] = _synced(result, item.nonce, conflict)
        else:
            answers[index] = _synced(_log_local(item, point, user, device, now), item.nonce)
    return [answers[i] for i in range(len(scans))]


def _log_local(
    item: OfflineScan, point: MarketPoint, user: User, device: str, now: datetime
) -> ScanResult:
    """Log a scan the offline device refused or held back, with the device's answer;
    nothing changes. Unknown reason codes from a device are logged as ``offline``."""
    kind, booking, _reason = resolve_scanned(item.scanned or "")
    result = WAIT if item.local_result == WAIT else REFUSED
    reason = item.local_reason if item.local_reason in REFUSALS else "offline"
    if result == WAIT:
        reason = "point_full"
    scan = log_scan(
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
      arrive_at, checked_in_at, packages (count to hand over on admission), proxy}],
      cancelled: [booking ids]}; instants ISO 8601 UTC. Residents' names, phones and
      NIKs are left out: the gate shows them when online.
      Issue 15: the gate opens for a booking from its ``arrive_at`` less the early
      minutes, as ``slots.window.checkin_window``; a booking made after the last sync
      is known only by its ticket, which states the slot, not the wave: the gate opens
      for it from the slot's start, and the merge records a too-early admission as a
      conflict. ``proxy`` is ``{name, nik_last4}`` of the person named to collect (or
      null): the gate must check their KTP offline too, or a forwarded ticket would
      pass there. The QR payload stays as it is.
    """
    now = now or utcnow()
    start, _end = local_day_bounds(local_date(now, point.timezone), point.timezone)
    rows = db.session.execute(
        select(
            Booking.id,
            Booking.code,
            Booking.status,
            Booking.checked_in_at,
            Booking.packages,
            Booking.arrive_at,
            Slot.starts_at,
            Slot.ends_at,
            BookingProxy.name.label("proxy_name"),
            BookingProxy.nik_last4.label("proxy_nik_last4"),
        )
        .join(Slot, Booking.slot_id == Slot.id)
        .outerjoin(
            BookingProxy,
            (BookingProxy.booking_id == Booking.id) & BookingProxy.removed_at.is_(None),
        )
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
    early, late = grace_minutes(config)
    return {
        "server_time": now.isoformat(),
        "market_point": {
            "id": point.id,
            "code": point.code,
            "name": point.name,
            "timezone": point.timezone,
            "safe_limit": point.safe_limit,
        },
        # The gate widens each booking's window (arrival to slot end) by these itself,
        # as ``slots.window.checkin_window``.
        "checkin_early_minutes": early,
        "checkin_late_minutes": late,
        # The gate counts inside as ``checkin.occupancy.visit_end`` does, with these.
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
                "arrive_at": row.arrive_at.isoformat(),
                "checked_in_at": row.checked_in_at.isoformat() if row.checked_in_at else None,
                # What to hand over on an offline admission (issue 15); 0: nothing.
                "packages": row.packages,
                "proxy": (
                    {"name": row.proxy_name, "nik_last4": row.proxy_nik_last4}
                    if row.proxy_name is not None
                    else None
                ),
            }
            for row in rows
        ],
        "cancelled": [row.id for row in rows if row.status == CANCELLED],
    }

"""``/api/v1/checkin``, ``/checkout``, ``/checkins/.../undo``, ``/gate/sync``,
``/checkin/sync``: the gate scans tickets, online and offline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import g, jsonify
from sqlalchemy.exc import IntegrityError

from accounts.auth import api_or_page_roles
from accounts.models import ADMIN, STAFF, SUPERVISOR
from api import bp
from api.access import gate_point
from api.responses import GateSnapshotOut, ScanOut, SyncOut, booking_json
from api.schemas import GateQuery, OfflineBatch, ScanBody, UndoBody
from api.spec import validate
from checkin import occupancy as checkin_occupancy
from checkin import offline as checkin_offline
from checkin import scanning as checkin_scanning
from common.db import run_with_retry
from common.errors import Forbidden
from common.timeutil import UTC, utcnow
from extensions import db
from slots.models import MarketPoint

# Session-authenticated POSTs (the gate page) without the page's CSRF token get 400.
_GATE_ERRORS = (400, 404, 409, 413, 422)


def _scan_json(result: checkin_scanning.ScanResult, point: MarketPoint) -> dict[str, Any]:
    show_booking = result.booking is not None and result.reason != "wrong_point"
    return {
        "result": result.result,
        "reason": result.reason or None,
        "message": result.message,
        "details": result.details,
        "replayed": result.replayed,
        "booking": booking_json(result.booking, with_ticket=False) if show_booking else None,
        "inside_now": (
            result.inside
            if result.inside is not None
            else checkin_occupancy.inside_now([point.id])[point.id]
        ),
        # The packages to hand over (issue 15): {packages} on an admission, else null.
        "handout": result.handout,
        "proxy": result.proxy,
    }


def _gate_scan(scan, body: ScanBody):
    """Run ``scan`` (check_in or check_out) on a checked gate body; answer in JSON.

    A resend of a ``nonce`` this user and device used before answers the first result
    (``replayed: true``); two copies racing each other: the loser's insert hits the
    unique constraint, rolls back, and answers from the winner's row.
    """
    point = gate_point(body.market_point)
    user, device, nonce = g.api_user, body.device or "", body.nonce
    try:
        result = scan(body.scanned, point, user, device=device, nonce=nonce)
        answer = _scan_json(result, point)
        db.session.flush()  # a racing copy's nonce fails here, inside the try
    except IntegrityError:
        db.session.rollback()
        earlier = checkin_scanning.logged_scan(user, device, nonce)
        if earlier is None:
            raise
        answer = _scan_json(checkin_scanning.replay(earlier), point)
    return jsonify(answer)


@bp.post("/checkin")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
@validate(*_GATE_ERRORS, ok=ScanOut, auth=True, tags=("gate",))
def checkin(json: ScanBody):
    """Scan at the gate: ``{ticket}`` or ``{code}`` (+ ``market_point`` for supervisors,
    optional ``device`` and ``nonce``); bearer token, or the gate page's session."""
    return _gate_scan(checkin_scanning.check_in, json)


@bp.post("/checkout")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
@validate(*_GATE_ERRORS, ok=ScanOut, auth=True, tags=("gate",))
def checkout(json: ScanBody):
    """End a visit: same body and auth as ``/checkin``."""
    return _gate_scan(checkin_scanning.check_out, json)


@bp.post("/checkins/<code>/undo")
@api_or_page_roles(SUPERVISOR, ADMIN)
@validate(*_GATE_ERRORS, ok=ScanOut, auth=True, tags=("gate",))
def undo_checkin(code: str, json: UndoBody):
    """Undo a check-in made in error (supervisors and admins): the booking is
    confirmed again; 409 ``not_checked_in`` when it is not checked in."""
    result = checkin_scanning.undo_check_in(code, g.api_user, device=json.device or "")
    point = result.booking.slot.market_point
    answer = _scan_json(result, point)
    return jsonify(answer)


@bp.get("/gate/sync")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
@validate(404, 422, ok=GateSnapshotOut, auth=True, tags=("gate",))
def gate_sync(query: GateQuery):
    """What an offline gate needs (``?market_point=CODE``; staff default to their own):
    the public keys, the check-in rules and the point's bookings of today and tomorrow
    with their statuses. Gates fetch it every 30 s while online."""
    point = gate_point(query.market_point)
    if not g.api_user.can_act_at(point):
        raise Forbidden()
    response = jsonify(checkin_offline.gate_snapshot(point))
    response.headers["Cache-Control"] = "no-store"
    return response


def _offline_scans(
    batch: OfflineBatch,
) -> tuple[list[checkin_offline.OfflineScan], list[dict[str, Any]]]:
    """The scans of a checked batch to merge, and the items rejected on their own
    (``invalid_scan``: nothing scanned; ``invalid_scanned_at``: malformed, or older
    than SYNC_MAX_AGE)."""
    now = utcnow()
    scans, rejected = [], []
    for item in batch.scans:
        nonce = item.nonce
        scanned = item.ticket if item.ticket is not None else item.code
        if not isinstance(scanned, str) or not scanned.strip():
            # One unreadable item is answered on its own; the batch's other scans merge.
            rejected.append({"nonce": nonce, "result": "rejected", "reason": "invalid_scan"})
            continue
        # A long text (a URL code, two tickets run together) is no ticket: kept short,
        # it is refused by the rules and, if admitted offline, becomes a conflict.
        scanned = scanned[:200]
        raw_at = item.scanned_at
        try:
            at = datetime.fromisoformat(raw_at) if isinstance(raw_at, str) else None
            at = at.astimezone(UTC) if at is not None and at.tzinfo is not None else None
        except (ValueError, OverflowError):  # malformed, or beyond the years a clock has
            at = None
        if at is None or at < now - checkin_offline.SYNC_MAX_AGE:
            rejected.append({"nonce": nonce, "result": "rejected", "reason": "invalid_scanned_at"})
            continue
        # A device clock running fast: the scan cannot have happened after now.
        scans.append(
            checkin_offline.OfflineScan(
                nonce,
                min(at, now),
                scanned,
                item.direction,
                item.local_result,
                (item.local_reason or "")[:32],
            )
        )
    return scans, rejected


@bp.post("/checkin/sync")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
@validate(*_GATE_ERRORS, ok=SyncOut, auth=True, tags=("gate",))
def checkin_sync(json: OfflineBatch):
    """Merge an offline gate's queued scans: ``{market_point?, device, scans: [{nonce,
    scanned_at, ticket|code, direction, local_result, local_reason}]}`` (at most 500)
    -> ``{results: [{nonce, result, reason, message, replayed, conflict}]}``. An item
    with no scanned text or an unusable ``scanned_at`` (malformed, or older than
    SYNC_MAX_AGE) comes back ``{nonce, result: "rejected", reason}`` and is not
    applied; the others merge. A malformed batch (not a list, nonces missing or
    repeated) is refused whole (422)."""
    scans, rejected = _offline_scans(json)
    device = json.device or ""
    point = gate_point(json.market_point)
    user = g.api_user

    def merge():
        answers = checkin_offline.sync_offline_scans(scans, point, user, device)
        db.session.flush()  # a racing copy's nonce fails here, inside the retry
        return answers

    try:
        results = run_with_retry(merge)
    except IntegrityError:
        # The same batch sent twice at once: the other copy committed; this run
        # answers every scan from the log.
        db.session.rollback()
        results = run_with_retry(merge)
    return jsonify(
        {
            "results": results + rejected,
            "inside_now": checkin_occupancy.inside_now([point.id])[point.id],
        }
    )

"""JSON API endpoints (``/api/v1``): thin wrappers over the services."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from flask import Response, current_app, g, jsonify, request
from sqlalchemy.exc import IntegrityError

from accounts.auth import api_or_page_roles, api_roles
from accounts.models import ADMIN, STAFF, SUPERVISOR, User
from accounts.service import user_for_token
from api import bp
from api.schemas import booking_json, market_point_json, slot_json, waiting_json
from checkin import exports, live
from checkin import service as checkin_service
from common.db import run_with_retry
from common.errors import DomainError, Forbidden, ValidationError
from common.limits import (
    booking_ip_limit,
    booking_nik_limit,
    code_key,
    lookup_code_limit,
    lookup_ip_limit,
    nik_key,
    no_nik,
)
from common.text import ensure_clean
from common.timeutil import UTC, local_date, parse_day, utcnow
from extensions import db, limiter
from notify.relay import commit_and_deliver
from qr.service import public_keys_json
from slots import booking as slots_booking
from slots import waiting as slots_waiting
from slots.availability import list_slots
from slots.booking import book_slot_once, get_booking_for_resident, place_booking
from slots.codes import request_fingerprint
from slots.models import MarketPoint
from slots.points import get_market_point, search_market_points
from slots.waiting import get_waiting_entry_for_resident

log = logging.getLogger("antri.api")


def _json_body() -> dict[str, Any]:
    """Return the request's JSON object. Raises ValidationError (422) otherwise."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # absurdly deep nesting
        body = None
    if not isinstance(body, dict):
        raise ValidationError("Send a JSON object.", code="invalid_json")
    ensure_clean(body)
    return body


def _text(body: dict[str, Any], field: str, required: bool = True) -> str:
    value = body.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValidationError(f"'{field}' must be a non-empty string.", code=f"invalid_{field}")
    return value


def _language(body: dict[str, Any]) -> str:
    """The optional ``language`` of a resident's messages: "id" (default) or "en"."""
    value = body.get("language", "id")
    if not isinstance(value, str):
        raise ValidationError("'language' must be a string.", code="invalid_language")
    return value


@bp.get("/market-points")
def market_points():
    """List active market points; ``?q=`` filters by name, kecamatan or city."""
    points = search_market_points(request.args.get("q", ""))
    return jsonify([market_point_json(p) for p in points])


@bp.get("/market-points/<code>/slots")
def market_point_slots(code: str):
    """List a point's published slots on ``?date=YYYY-MM-DD`` (local date; default today)."""
    point = get_market_point(code)
    raw = request.args.get("date")
    if raw:
        try:
            day = parse_day(raw)
        except ValueError:
            raise ValidationError(
                "date must be a date YYYY-MM-DD between 2000 and 2100.", code="invalid_date"
            ) from None
    else:
        day = local_date(utcnow(), point.timezone)
    return jsonify([slot_json(s) for s in list_slots(point, day)])


@bp.post("/bookings")
@limiter.limit(booking_ip_limit)
@limiter.limit(booking_nik_limit, key_func=nik_key, exempt_when=no_nik)
def create_booking():
    """Book a slot: ``{slot_id, name, nik, phone}`` -> 201 with the ticket.

    With an ``Idempotency-Key`` header, a repeat of the same request returns the
    first booking (header ``Idempotent-Replayed: true``) instead of booking again.
    """
    body = _json_body()
    slot_id = body.get("slot_id")
    if not isinstance(slot_id, int) or isinstance(slot_id, bool):
        raise ValidationError("'slot_id' must be an integer.", code="invalid_slot_id")
    fields = (_text(body, "name"), _text(body, "nik"), _text(body, "phone"))
    language = _language(body)
    kk = _text(body, "kk", required=False)
    key = request.headers.get("Idempotency-Key")
    headers = {}
    if key is None:
        booking = place_booking(slot_id, *fields, language=language, kk=kk)
    else:
        request_fields = {"slot_id": slot_id, "name": fields[0], "nik": fields[1]}
        request_fields["phone"] = fields[2]
        for optional in ("language", "kk"):
            if optional in body:
                request_fields[optional] = body[optional]
        fingerprint = request_fingerprint(request_fields)
        booking, replayed = book_slot_once(
            key, fingerprint, slot_id, *fields, language=language, kk=kk
        )
        headers["Idempotent-Replayed"] = "true" if replayed else "false"
    body = booking_json(booking)  # before the commit, which would expire what it reads
    commit_and_deliver()
    return jsonify(body), 201, headers


@bp.get("/bookings/<code>")
@limiter.limit(lookup_ip_limit)
@limiter.limit(lookup_code_limit, key_func=code_key)
def get_booking(code: str):
    """Fetch a booking by code and ``?phone=``; one 404 for any mismatch."""
    booking = get_booking_for_resident(code, request.args.get("phone", ""))
    return jsonify(booking_json(booking))


@bp.post("/bookings/<code>/cancel")
@limiter.limit(lookup_ip_limit)
@limiter.limit(lookup_code_limit, key_func=code_key)
def cancel_booking(code: str):
    """Cancel a booking: ``{phone}`` -> ``{status: "cancelled"}``."""
    body = _json_body()
    phone = _text(body, "phone", False)

    def cancel():
        booking = get_booking_for_resident(code, phone)
        slots_booking.cancel_booking(booking)
        commit_and_deliver()
        return booking

    # Promotions lock several residents; a crossed pair may deadlock and retry.
    booking = run_with_retry(cancel)
    return jsonify({"code": booking.code, "status": booking.status})


# A client's nonce: what a UUID, a ULID or a counter with a prefix looks like.
_NONCE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _nonce(value: Any, field: str = "nonce") -> str | None:
    """The optional scan ``nonce`` of a body, checked. Raises ValidationError 422."""
    if value is None:
        return None
    if not isinstance(value, str) or not _NONCE.fullmatch(value):
        raise ValidationError(
            f"'{field}' must be 1-64 characters of A-Z, a-z, 0-9 . _ : -.", code="invalid_nonce"
        )
    return value


def _device(body: dict[str, Any]) -> str:
    """The optional ``device`` label of a body. Raises ValidationError 422."""
    value = body.get("device")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError("'device' must be a string.", code="invalid_device")
    return value


def _scan_point(body: dict[str, Any]) -> MarketPoint:
    """The gate's market point: the body's ``market_point``, or a staff member's own."""
    user = g.api_user
    point_code = body.get("market_point")
    if point_code is None and user.role == STAFF:
        return user.market_point
    if isinstance(point_code, str):
        return get_market_point(point_code)  # the scan refuses others' points
    raise ValidationError(
        "Name the gate's 'market_point' (staff default to their own).",
        code="invalid_market_point",
    )


def _scan_json(result: checkin_service.ScanResult, point: MarketPoint) -> dict[str, Any]:
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
            else checkin_service.inside_now([point.id])[point.id]
        ),
    }


def _gate_scan(scan) -> tuple:
    """Parse a gate body, run ``scan`` (check_in or check_out) and answer in JSON.

    A resend of a ``nonce`` this user and device used before answers the first result
    (``replayed: true``); two copies racing each other: the loser's insert hits the
    unique constraint, rolls back, and answers from the winner's row.
    """
    body = _json_body()
    scanned = body.get("ticket") if body.get("ticket") is not None else body.get("code")
    if not isinstance(scanned, str) or not scanned.strip():
        raise ValidationError("Send 'ticket' or 'code'.", code="invalid_scan")
    nonce, device = _nonce(body.get("nonce")), _device(body)
    point = _scan_point(body)
    user = g.api_user
    try:
        result = scan(scanned, point, user, device=device, nonce=nonce)
        answer = _scan_json(result, point)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        earlier = checkin_service.logged_scan(user, device, nonce)
        if earlier is None:
            raise
        answer = _scan_json(checkin_service.replay(earlier), point)
    return jsonify(answer)


def _offline_scans(
    body: dict[str, Any],
) -> tuple[list[checkin_service.OfflineScan], list[dict[str, Any]]]:
    """Parse the ``scans`` list of a sync body. Raises ValidationError 422 (the code
    names the fault: ``invalid_scans``, ``batch_too_large``, ``invalid_nonce``, ...)."""
    items = body.get("scans")
    if not isinstance(items, list):
        raise ValidationError("'scans' must be a list.", code="invalid_scans")
    if len(items) > checkin_service.MAX_SYNC_SCANS:
        raise ValidationError(
            f"Send at most {checkin_service.MAX_SYNC_SCANS} scans at once.",
            code="batch_too_large",
        )
    now = utcnow()
    scans, seen = [], set()
    rejected: list[dict[str, Any]] = []
    for number, item in enumerate(items):
        where = f"scans[{number}]"
        if not isinstance(item, dict):
            raise ValidationError(f"{where} must be an object.", code="invalid_scans")
        nonce = _nonce(item.get("nonce"), f"{where}.nonce")
        if nonce is None or nonce in seen:
            raise ValidationError(f"{where} needs its own 'nonce'.", code="invalid_nonce")
        seen.add(nonce)
        scanned = item.get("ticket") if item.get("ticket") is not None else item.get("code")
        if not isinstance(scanned, str) or not scanned.strip():
            # One unreadable item is answered on its own; the batch's other scans merge.
            rejected.append({"nonce": nonce, "result": "rejected", "reason": "invalid_scan"})
            continue
        # A long text (a URL code, two tickets run together) is no ticket: kept short,
        # it is refused by the rules and, if admitted offline, becomes a conflict.
        scanned = scanned[:200]
        direction = item.get("direction", "in")
        local_result = item.get("local_result", "admitted")
        local_reason = item.get("local_reason") or ""
        if direction not in ("in", "out") or local_result not in (
            "admitted", "refused", "wait", "checked_out"
        ) or not isinstance(local_reason, str):  # fmt: skip
            raise ValidationError(
                f"{where}: direction in|out, local_result admitted|refused|wait|checked_out.",
                code="invalid_scans",
            )
        raw_at = item.get("scanned_at")
        try:
            at = datetime.fromisoformat(raw_at) if isinstance(raw_at, str) else None
            at = at.astimezone(UTC) if at is not None and at.tzinfo is not None else None
        except (ValueError, OverflowError):  # malformed, or beyond the years a clock has
            at = None
        if at is None or at < now - checkin_service.SYNC_MAX_AGE:
            rejected.append({"nonce": nonce, "result": "rejected", "reason": "invalid_scanned_at"})
            continue
        # A device clock running fast: the scan cannot have happened after now.
        scans.append(
            checkin_service.OfflineScan(
                nonce, min(at, now), scanned, direction, local_result, local_reason[:32]
            )
        )
    return scans, rejected


@bp.post("/slots/<int:slot_id>/waiting-list")
@limiter.limit(booking_ip_limit)
@limiter.limit(booking_nik_limit, key_func=nik_key, exempt_when=no_nik)
def join_waiting_list(slot_id: int):
    """Join a full slot's waiting list: ``{name, nik, phone}`` -> 201 with the position."""
    body = _json_body()
    entry = slots_waiting.join_waiting_list(
        slot_id,
        _text(body, "name"),
        _text(body, "nik"),
        _text(body, "phone"),
        language=_language(body),
        kk=_text(body, "kk", required=False),
    )
    db.session.commit()
    return jsonify(waiting_json(entry)), 201


@bp.get("/waiting-list/<code>")
@limiter.limit(lookup_ip_limit)
@limiter.limit(lookup_code_limit, key_func=code_key)
def get_waiting_entry(code: str):
    """A waiting-list place by code and ``?phone=``: status, position, booking if promoted."""
    entry = get_waiting_entry_for_resident(code, request.args.get("phone", ""))
    return jsonify(waiting_json(entry))


@bp.post("/waiting-list/<code>/leave")
@limiter.limit(lookup_ip_limit)
@limiter.limit(lookup_code_limit, key_func=code_key)
def leave_waiting_list(code: str):
    """Leave a waiting list: ``{phone}`` -> ``{status: "left"}``."""
    body = _json_body()
    entry = get_waiting_entry_for_resident(code, _text(body, "phone", False))
    slots_waiting.leave_waiting_list(entry)
    db.session.commit()
    return jsonify(waiting_json(entry))


@bp.post("/checkin")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
def checkin():
    """Scan at the gate: ``{ticket}`` or ``{code}`` (+ ``market_point`` for supervisors,
    optional ``device`` and ``nonce``); bearer token, or the gate page's session."""
    return _gate_scan(checkin_service.check_in)


@bp.post("/checkout")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
def checkout():
    """End a visit: same body and auth as ``/checkin``."""
    return _gate_scan(checkin_service.check_out)


@bp.post("/checkins/<code>/undo")
@api_or_page_roles(SUPERVISOR, ADMIN)
def undo_checkin(code: str):
    """Undo a check-in made in error (supervisors and admins): the booking is
    confirmed again; 409 ``not_checked_in`` when it is not checked in."""
    body = request.get_json(silent=True)
    device = _device(body) if isinstance(body, dict) else ""
    result = checkin_service.undo_check_in(code, g.api_user, device=device)
    point = result.booking.slot.market_point
    answer = _scan_json(result, point)
    db.session.commit()
    return jsonify(answer)


@bp.get("/gate/sync")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
def gate_sync():
    """What an offline gate needs (``?market_point=CODE``; staff default to their own):
    the public keys, the check-in rules and the point's bookings of today and tomorrow
    with their statuses. Gates fetch it every 30 s while online."""
    point = _scan_point({"market_point": request.args.get("market_point")})
    if not g.api_user.can_act_at(point):
        raise Forbidden()
    response = jsonify(checkin_service.gate_snapshot(point))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/checkin/sync")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
def checkin_sync():
    """Merge an offline gate's queued scans: ``{market_point?, device, scans: [{nonce,
    scanned_at, ticket|code, direction, local_result, local_reason}]}`` (at most 500)
    -> ``{results: [{nonce, result, reason, message, replayed, conflict}]}``. An item
    with no scanned text or an unusable ``scanned_at`` (malformed, or older than
    SYNC_MAX_AGE) comes back ``{nonce, result: "rejected", reason}`` and is not
    applied; the others merge. A malformed batch (not a list, nonces missing or
    repeated) is refused whole (422)."""
    body = _json_body()
    scans, rejected = _offline_scans(body)
    device = _device(body)
    point = _scan_point(body)
    user = g.api_user

    def merge():
        answers = checkin_service.sync_offline_scans(scans, point, user, device)
        db.session.commit()
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
            "inside_now": checkin_service.inside_now([point.id])[point.id],
        }
    )


@bp.get("/keys")
def keys():
    """The public keys that verify tickets, for offline scanners (docs/tickets.md)."""
    response = jsonify({"keys": public_keys_json()})
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/occupancy")
@api_roles(SUPERVISOR, ADMIN)
def occupancy():
    """Every active point: inside now, safe limit, booked and checked in today."""
    return jsonify(checkin_service.occupancy())


class LiveUnavailable(DomainError):
    """The live feed needs Redis, and Redis is not configured or not answering, or
    this process (or this account) has its maximum of streams open."""

    code = "live_unavailable"
    status = 503
    default_message = "The live feed is not available now; poll /api/v1/occupancy/overview."


@bp.errorhandler(LiveUnavailable)
def live_unavailable(exc: LiveUnavailable):
    """503 JSON body with a ``Retry-After`` header (seconds) so clients back off."""
    db.session.rollback()
    response = jsonify(exc.to_dict())
    response.status_code = exc.status
    response.headers["Retry-After"] = str(exc.details.get("retry_after", 5))
    response.headers["Cache-Control"] = "no-store"
    return response


def _visible_points(code: str | None) -> list[MarketPoint]:
    """The points the caller (``g.api_user``) may watch, or only ``code`` among them.

    Staff see their own point only. Raises: MarketPointNotFound (404) for an unknown
    code, Forbidden (403) for staff naming another point.
    """
    user = g.api_user
    if code is not None:
        point = get_market_point(code)
        if not user.can_act_at(point):
            raise Forbidden()
        return [point]
    if user.role == STAFF:
        return [user.market_point] if user.market_point is not None else []
    return checkin_service.active_points()


def _query_day(points: list[MarketPoint]):
    """The ``?date=YYYY-MM-DD`` of the request, or today where the first point is.

    Raises: ValidationError 400 ``invalid_date`` for anything else.
    """
    raw = request.args.get("date")
    if raw is None:
        tz_name = points[0].timezone if points else current_app.config["DEFAULT_TIMEZONE"]
        return local_date(utcnow(), tz_name)
    try:
        return parse_day(raw)
    except ValueError:
        raise ValidationError(
            "date must be a date YYYY-MM-DD between 2000 and 2100.",
            code="invalid_date",
            status=400,
        ) from None


@bp.get("/occupancy/overview")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
def occupancy_overview():
    """Every point the caller may see (``?market_point=CODE`` for one): inside now,
    gauge level, today's counts and alerts. Pages poll this when there is no stream."""
    points = _visible_points(request.args.get("market_point"))
    response = jsonify(checkin_service.overview(points=points))
    response.headers["Cache-Control"] = "no-store"
    return response


def _still_allowed(user_id: int, token: str | None, only: set[int] | None):
    """Return a callable telling whether the stream's caller may still watch: for a
    bearer ``token``, that it is unrevoked and still ``user_id``'s; for a session,
    that the account is active; either way a role that sees the stream's points
    (``only``: the point ids of a staff or one-point stream; None: every point).
    It runs outside the request (in the streaming generator), in an app context of its
    own; a database error counts as "no" (the client reconnects and is checked anew)."""
    app = current_app._get_current_object()

    def check() -> bool:
        with app.app_context():
            try:
                user = user_for_token(token) if token else db.session.get(User, user_id)
                if user is None or user.id != user_id or not user.active:
                    return False
                if user.role in (SUPERVISOR, ADMIN):
                    return True
                return user.role == STAFF and only is not None and only <= {user.market_point_id}
            except Exception:
                log.warning("live feed: could not re-check a stream's caller", exc_info=True)
                return False
            finally:
                db.session.remove()

    return check


@bp.get("/occupancy/stream")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
def occupancy_stream():
    """Server-Sent Events: a snapshot of the points the caller may see, then every
    change there as it commits (checkin/live.py). 503 ``live_unavailable`` with
    ``Retry-After`` without Redis or when too many streams are open."""
    code = request.args.get("market_point")
    points = _visible_points(code)
    config = current_app.config
    hub = current_app.extensions.get(live.HUB)
    if hub is None or not hub.ensure_running():
        raise LiveUnavailable(retry_after=config["LIVE_RETRY_SECONDS"])
    user = g.api_user
    try:  # before the snapshot, so nothing falls between the two
        q = hub.subscribe(
            f"user:{user.id}",
            config["LIVE_MAX_STREAMS_PER_PROCESS"],
            config["LIVE_MAX_STREAMS_PER_USER"],
        )
    except live.StreamLimit:
        raise LiveUnavailable(
            "Too many live streams are open; poll /api/v1/occupancy/overview.",
            retry_after=max(config["LIVE_RETRY_SECONDS"], 30),
        ) from None
    try:
        snapshot = checkin_service.overview(points=points)
    except Exception:
        hub.unsubscribe(q)
        raise
    only = {p.id for p in points} if code is not None or user.role == STAFF else None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else None
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        # A client that stops reading would block a write, and the thread, forever;
        # with a timeout the write fails and gunicorn frees the thread.
        sock.settimeout(config["LIVE_WRITE_TIMEOUT_SECONDS"])
    body = live.stream(
        hub,
        q,
        snapshot,
        only,
        config["LIVE_HEARTBEAT_SECONDS"],
        config["LIVE_STREAM_MAX_SECONDS"],
        _still_allowed(user.id, token, only),
    )
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(body, mimetype="text/event-stream", headers=headers)


@bp.get("/exports/bookings.csv")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
def export_bookings():
    """A day's bookings and check-ins as CSV (checkin/exports.py says what is in it):
    ``?date=YYYY-MM-DD`` (default today) and ``market_point=CODE`` (default all the
    caller may see)."""
    code = request.args.get("market_point")
    points = _visible_points(code)
    day = _query_day(points)
    body = exports.to_csv(exports.booking_rows(points, day))
    name = f"antri-bookings-{points[0].code if code else 'all'}-{day.isoformat()}.csv"
    name = "".join(ch for ch in name if ch.isalnum() or ch in "-_.")
    return Response(
        body,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )

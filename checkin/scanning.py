"""Scanning at the gate: check-in, check-out, undo, replay, and the scan log.

Rules (DESIGN.md, "Check-in rules"): admit only a confirmed booking for this market
point, inside its slot window widened by CHECKIN_EARLY_MINUTES before and
CHECKIN_LATE_MINUTES after; otherwise refuse with a reason code. The first scan wins
(a conditional update), and every scan is logged; a resent nonce is a no-op.
Offline gates merge their queued scans through ``checkin.offline``, which calls the
functions here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from accounts.models import ADMIN, SUPERVISOR, User
from checkin.conflicts import open_visit
from checkin.errors import REFUSALS, NonceReused, NotCheckedIn
from checkin.handout import give_back, hand_out, replayed_handout
from checkin.models import ADMITTED, REFUSED, UNDONE, WAIT, Scan
from checkin.occupancy import at_safe_limit, dwell, inside_now
from common import audit, events
from common.errors import Forbidden
from common.timeutil import local_date, local_text, utcnow
from extensions import db
from qr.errors import TicketError
from qr.service import verify_ticket
from slots.codes import normalise_code
from slots.errors import BookingNotFound
from slots.locks import lock_market_point
from slots.models import (
    CANCELLED,
    CHECKED_IN,
    CHECKED_OUT,
    CONFIRMED,
    NO_SHOW,
    Booking,
    MarketPoint,
    Slot,
)
from slots.proxy import proxy_summary
from slots.status import transition
from slots.window import checkin_window, window_refusal


@dataclass(frozen=True)
class ScanResult:
    """What the gate shows: ``result`` admitted|wait|refused|checked_out|undone,
    ``reason`` code ("" when accepted), a plain ``message``, the booking if found, the
    scan row; ``replayed`` when this answers a resent nonce from the log instead of
    acting again; ``details`` JSON-safe facts behind the reason (``already_checked_in``:
    ``checked_in_at`` ISO UTC and ``checked_in_by`` e-mail; ``point_full``: ``inside``
    and ``limit`` counts; ``too_early``: ``arrive_at`` and ``opens_at`` ISO UTC, the
    booking's arrival time and when the gate opens for it); ``handout``
    ``{packages: K}`` on an admission that handed over K > 0 packages of its point-day's
    stock (issue 15), else None."""

    result: str
    reason: str
    message: str
    booking: Booking | None
    scan: Scan
    replayed: bool = False
    details: dict = field(default_factory=dict)
    # People inside after this scan, when the scan counted them (None: not known).
    inside: int | None = None
    # The packages to hand over on this admission (issue 15): {"packages": K} or None.
    handout: dict | None = None
    # On an admission of a booking with a proxy: ``{name, nik_last4}`` of the person
    # collecting, whose KTP the gate checks (issue 15 part 3); None otherwise.
    proxy: dict | None = None


# How refusal messages show an instant: the point's wall clock.
_CLOCK = "%H:%M"
_DAY = "%d-%m-%Y %H:%M"


_WITH_POINT = joinedload(Booking.slot).joinedload(Slot.market_point)


def resolve_scanned(scanned: str) -> tuple[str, Booking | None, str]:
    """Find the booking behind scanned text: a typed booking code or a ticket token.

    Returns: (input kind ``code``|``ticket``, the Booking with its slot and point loaded
      or None, a refusal reason or "": ``unknown_ticket`` or the ticket's own error
      code such as ``invalid_signature``). Never raises for bad input.
    """
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
    if reason == "wrong_point":
        return {"point": slot.market_point.name}, {}
    if reason == "already_checked_in":
        details = _checked_in_details(booking, now)
        when = datetime.fromisoformat(details["checked_in_at"])
        return {
            "time": local_text(when, point.timezone, _DAY),
            "by": details["checked_in_by"],
        }, details
    if reason == "not_today":
        return {"when": local_text(slot.starts_at, point.timezone, _DAY)}, {}
    if reason == "too_early":
        # The resident's arrival time (issue 15): "datang pukul HH:MM", and when the
        # gate opens for them.
        opens, _closes = checkin_window(slot, current_app.config, booking.arrive_at)
        return {
            "arrive": local_text(booking.arrive_at, point.timezone, _CLOCK),
            "time": local_text(opens, point.timezone, _CLOCK),
        }, {"arrive_at": booking.arrive_at.isoformat(), "opens_at": opens.isoformat()}
    if reason == "too_late":
        # An end on an earlier local day (a late scan after midnight) shows its date.
        same_day = local_date(slot.ends_at, point.timezone) == local_date(now, point.timezone)
        return {"time": local_text(slot.ends_at, point.timezone, _CLOCK if same_day else _DAY)}, {}
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
    return window_refusal(slot, now, point.timezone, current_app.config, booking.arrive_at)


def log_scan(
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
    by_proxy: bool = False,
) -> Scan:
    """Append one row to the scan log and flush it (the refused ones too).

    Args: point, booking (None when the ticket was not found), user and device (as
      stored), now (aware UTC, when scanned), direction ``in``|``out``, kind
      ``code``|``ticket``, result and reason ("" when accepted), nonce, synced_at
      (aware UTC, when an offline scan reached the server; else None), by_proxy (an
      admission of a booking whose proxy collects: issue 15 part 3).
    Returns: the flushed Scan. Raises IntegrityError on a repeated (user, device, nonce).
    """
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
        by_proxy=by_proxy,
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


def device_label(device: str | None) -> str:
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
            Scan.user_id == user.id, Scan.device == device_label(device), Scan.nonce == nonce
        )
    )


def _same_request(earlier: Scan, direction: str, scanned: str) -> None:
    """A nonce names one request: the same direction and the same booking (or the same
    unknown ticket). Raises NonceReused (409) for another request under it, which a
    replay would answer with someone else's result."""
    _kind, booking, _reason = resolve_scanned(scanned or "")
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
    # The first answer's handout again, handed over once (issue 15).
    handout = replayed_handout(booking) if scan.direction == "in" and result == ADMITTED else None
    proxy = proxy_summary(scan.booking_id) if scan.by_proxy else None
    return ScanResult(
        result,
        scan.reason,
        _message(scan.reason, args, booking),
        booking,
        scan,
        True,
        details,
        handout=handout,
        proxy=proxy,
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
      A refusal is a result, not an exception, so it is logged. An admission of a
      booking with a proxy carries ``proxy`` ``{name, nik_last4}`` and is logged
      ``by_proxy`` (issue 15 part 3).
    Raises: Forbidden (403) when ``user`` may not scan at ``point``. Two concurrent
      requests with one nonce: the second's flush raises IntegrityError (the unique
      constraint); the caller rolls back and answers ``replay`` of the first.
    """
    if not user.can_act_at(point):
        raise Forbidden()
    now = now or utcnow()
    device = device_label(device)
    earlier = logged_scan(user, device, nonce)
    if earlier is not None:
        _same_request(earlier, "in", scanned)
        return replay(earlier, now)
    kind, booking, reason = resolve_scanned(scanned or "")
    result = REFUSED
    if booking is not None:
        reason = _refusal_reason(booking, point, now)
    inside = 0
    handout = None
    proxy = None
    if booking is not None and not reason:
        lock_market_point(point)
        inside = inside_now([point.id], now)[point.id]
        if enforce_limit and at_safe_limit(inside, point.safe_limit):
            result, reason = WAIT, "point_full"
        else:
            # First scan wins: one transaction only moves this booking out of confirmed.
            won = transition(Booking, booking.id, CONFIRMED, CHECKED_IN, checked_in_at=now)
            if won:
                # What the update wrote, without reading the row back.
                set_committed_value(booking, "status", CHECKED_IN)
                set_committed_value(booking, "checked_in_at", now)
                result = ADMITTED
                handout = hand_out(booking, now)
                # Read under the booking's lock: a proxy named or removed is decided.
                proxy = proxy_summary(booking.id)
            else:
                db.session.refresh(booking)  # another gate won: read what it wrote
                reason = _refusal_reason(booking, point, now)
    scan = log_scan(
        point, user, booking, now, "in", kind, result, reason, device, _nonce(nonce), synced_at,
        by_proxy=proxy is not None,
    )  # fmt: skip
    # Inside now is known under the point's lock: no extra query for the live feed.
    count = None if booking is None or result == REFUSED else inside + (result == ADMITTED)
    _record_scan("check_in" if result == ADMITTED else result, point, scan, booking, count)
    if reason == "point_full":
        args = details = {"inside": inside, "limit": point.safe_limit}
    else:
        args, details = _reason_args(reason, booking, point, now)
    message = _message(reason, args, booking)
    return ScanResult(
        result, reason, message, booking, scan, False, details, count, handout=handout, proxy=proxy
    )


def _record_scan(
    kind: str, point: MarketPoint, scan: Scan, booking: Booking | None, inside: int | None
) -> None:
    """Tell the live feed (after the commit) about a scan: ``kind`` check_in,
    check_out, wait, refused or undo; ``inside`` people inside after it, None if unknown."""
    events.record(
        events.live_event(
            kind,
            point.id,
            point.code,
            scan.scanned_at,
            safe_limit=point.safe_limit,
            inside_now=inside,
            booking_id=scan.booking_id,
            slot_id=booking.slot_id if booking is not None else None,
            direction=scan.direction,
            reason=scan.reason or None,
        )
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

    The booking's own visit ends first; when the booking is not checked in (cancelled,
    or already out), the scan ends the visit of a person an offline gate admitted on
    this ticket against the server's rules (a gate conflict, ``GateConflict.left_at``;
    issue 14 item 4), the earliest such visit still open.

    Args: as ``check_in`` (a resent nonce answers the first result).
    Returns: ScanResult with result ``checked_out``, or ``refused`` with reason
      ``not_checked_in``, ``already_checked_out``, ``wrong_point`` or a ticket reason.
      The log row is direction ``out``; its result is ``admitted`` when accepted.
    Raises: Forbidden (403) when ``user`` may not scan at ``point``.
    """
    if not user.can_act_at(point):
        raise Forbidden()
    now = now or utcnow()
    device = device_label(device)
    earlier = logged_scan(user, device, nonce)
    if earlier is not None:
        _same_request(earlier, "out", scanned)
        return replay(earlier, now)
    kind, booking, reason = resolve_scanned(scanned or "")
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
            # Not (or no longer) the booking's own visit: someone an offline gate let
            # in on this ticket anyway may be leaving (issue 14 item 4).
            admitted_anyway = None if left else open_visit(
                booking, point, now - dwell(current_app.config), now
            )  # fmt: skip
            if left:
                result = CHECKED_OUT
            elif admitted_anyway is not None:
                admitted_anyway.left_at = now
                result = CHECKED_OUT
            elif booking.status == CHECKED_OUT:
                reason = "already_checked_out"
            else:
                reason = "not_checked_in"
    logged = ADMITTED if result == CHECKED_OUT else REFUSED
    scan = log_scan(
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
    Returns: ScanResult with result ``undone`` and no reason. Packages handed over at
      the admission are given back (``checkin.handout.give_back``; issue 15).
    Raises: Forbidden (403) for staff; BookingNotFound (404) when nothing matches;
      NotCheckedIn (409) when the booking is not checked in now (never, already undone,
      or checked out: a finished visit is history, not an error to undo).
    """
    if user.role not in (SUPERVISOR, ADMIN):
        raise Forbidden()
    now = now or utcnow()
    kind, booking, _reason = resolve_scanned(scanned or "")
    if booking is None:
        raise BookingNotFound()
    point = booking.slot.market_point
    checked_in_at = booking.checked_in_at
    if not transition(Booking, booking.id, CHECKED_IN, CONFIRMED, checked_in_at=None):
        raise NotCheckedIn()
    db.session.refresh(booking)
    handed_back = give_back(booking)  # the packages handed over go back (issue 15)
    # A check-in override: in the audit log with the admin actions (issue 8).
    audit.record(
        audit.Actor.of(user),
        "checkin.undo",
        "booking",
        booking.code,
        {"status": CHECKED_IN, "checked_in_at": checked_in_at},
        {"status": CONFIRMED, **({"packages_given_back": handed_back} if handed_back else {})},
        point.id,
        now,
    )
    scan = log_scan(
        point, user, booking, now, "in", kind, UNDONE, "", device_label(device), _nonce(None)
    )
    _record_scan("undo", point, scan, booking, inside_now([point.id], now)[point.id])
    return ScanResult(UNDONE, "", _message("", {}, booking), booking, scan)

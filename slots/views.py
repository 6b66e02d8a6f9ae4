"""Resident pages: find a market point, pick a day and a slot, book it."""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from common.errors import DomainError
from common.limits import booking_ip_limit, booking_nik_limit, nik_key, no_nik
from common.timeutil import local_date, parse_day, utcnow
from extensions import db, limiter
from slots import waiting as slots_waiting
from slots.availability import (
    ballot_days,
    bookable_days,
    get_slot,
    list_slots,
    slot_local_times,
    takes_bookings,
)
from slots.booking import book_slot_once
from slots.codes import (
    booking_access_key,
    check_waiting_access_key,
    request_fingerprint,
    waiting_access_key,
)
from slots.forms import BookingForm, LeaveForm, WaitingListForm
from slots.identity import field_faults
from slots.points import get_market_point, search_market_points
from slots.stock import day_levels, slot_day, stock_level
from slots.waiting import find_waiting_entry, waiting_position

bp = Blueprint("slots", __name__)


@bp.get("/")
def index():
    """Search market points by name, kecamatan or city."""
    query = request.args.get("q", "")[:100]
    points = search_market_points(query)
    return render_template("slots/index.html", points=points, query=query)


@bp.get("/points/<code>")
def point(code: str):
    """A market point's slots on one local day, with places left; without a day asked
    for, the first day with bookable slots (issue 14 item 10)."""
    market_point = get_market_point(code)
    now = utcnow()
    today = local_date(now, market_point.timezone)
    days = [today + timedelta(days=i) for i in range(current_app.config["BOOKING_DAYS_AHEAD"])]
    counts = bookable_days(market_point, days, now)
    balloted = ballot_days(market_point, days, now)  # issue 16: Undian, not "0 slots"
    # Days whose stock cannot cover one more booking show every slot as Habis (issue 15).
    sold_out = {d for d, level in day_levels(market_point, days).items() if level.sold_out}
    first_open = next(
        (d for d, count in counts.items() if count and d not in sold_out),
        next((d for d, count in counts.items() if count), today),
    )
    try:
        day = parse_day(request.args.get("date", "")) if request.args.get("date") else first_open
    except ValueError:
        day = first_open
    # A ballot's slots show too, as "Undian" with a link to enter (issue 16).
    slots = [
        s
        for s in list_slots(market_point, day, now)
        if takes_bookings(s, now) or (s.ballot_id is not None and s.ends_at > now)
    ]
    if day not in sold_out and day not in days:  # a day outside the links' range
        level = stock_level(market_point, day)
        if level is not None and level.sold_out:
            sold_out.add(day)
    return render_template(
        "slots/point.html",
        point=market_point,
        day=day,
        days=days,
        counts=counts,
        slots=slots,
        sold_out=sold_out,
        balloted=balloted,
    )


def day_sold_out(slot) -> bool:
    """True when the stock of ``slot``'s point-day cannot cover one more booking
    (issue 15: every slot of that day shows as sold out, Habis, and its booking link
    leads to the waiting list). False where the day has no stock setting."""
    level = stock_level(slot.market_point, slot_day(slot))
    return level is not None and level.sold_out


def _no_store(page: str, status: int):
    return page, status, {"Cache-Control": "private, no-store"}


def _page_language() -> str:
    """The language the resident is reading the page in: their messages use it."""
    return str(get_locale() or "id")


# The form field each field-level refusal of the services is about (issue 14 item 8).
FIELD_OF_CODE = {
    "invalid_name": "name",
    "invalid_nik": "nik",
    "invalid_phone": "phone",
    "invalid_kk": "kk",
}


def _typed(form) -> tuple[str, str, str, str]:
    """The resident's fields as typed: (name, nik, phone, kk)."""
    return form.name.data or "", form.nik.data or "", form.phone.data or "", form.kk.data or ""


def _form_faults(form, slot) -> dict[str, DomainError]:
    """Every faulty field of a resident's form, checked before any service runs."""
    name, nik, phone, kk = _typed(form)
    return field_faults(name, nik, phone, kk if slot.market_point.household_limit else None)


def _refusal(exc: DomainError) -> tuple[DomainError | None, dict[str, DomainError]]:
    """Split a service's refusal: (a message above the form, or faults beside fields)."""
    field = FIELD_OF_CODE.get(exc.code)
    return (None, {field: exc}) if field else (exc, {})


def _render_form(template: str, slot, form, error, faults, status: int, **extra):
    """Render a resident's form: what was typed is kept, except a field that was itself
    wrong (issue 14 item 7; a NIK goes back only into its field of this no-store page);
    ``extra``: more template values (``sold_out``, issue 15)."""
    for field in faults:
        form[field].data = ""
    start, end = slot_local_times(slot)
    page = render_template(
        template,
        slot=slot,
        form=form,
        error=error,
        faults=faults,
        first_fault=next(iter(faults), None),
        start=start,
        end=end,
        **extra,
    )
    return _no_store(page, status)


@bp.route("/slots/<int:slot_id>/book", methods=["GET", "POST"])
@limiter.limit(booking_ip_limit, methods=["POST"])
@limiter.limit(booking_nik_limit, key_func=nik_key, exempt_when=no_nik, methods=["POST"])
def book(slot_id: int):
    """The booking form; on success, the ticket page; a full slot's, its waiting list."""
    slot = get_slot(slot_id)
    if (
        request.method == "GET"
        and takes_bookings(slot, utcnow())
        and (slot.remaining == 0 or day_sold_out(slot))
    ):
        # Offer the waiting list before the resident types anything (issue 14 item 9);
        # a sold-out day's slots too (issue 15).
        return redirect(url_for("slots.join_waiting_list", slot_id=slot.id), 303)
    form = BookingForm()
    error, faults = None, {}
    status = 200
    submitted = form.validate_on_submit()
    if submitted:  # every field first, so several faults are reported together
        faults = _form_faults(form, slot)
        status = 422 if faults else status
    if submitted and not faults:
        name, nik, phone, kk = _typed(form)
        try:
            request_id = form.request_id.data or secrets.token_urlsafe(16)
            booking, _ = book_slot_once(
                f"form:{request_id}",
                request_fingerprint({"slot_id": slot_id, "fields": (name, nik, phone), "kk": kk}),
                slot_id,
                name,
                nik,
                phone,
                language=_page_language(),
                kk=kk,
            )
        except DomainError as exc:
            db.session.rollback()
            (error, faults), status = _refusal(exc), exc.status
            slot = get_slot(slot_id)
            form.request_id.data = secrets.token_urlsafe(16)  # a corrected form is new
        else:  # the request's one commit follows (common.transactions.run_view)
            key = booking_access_key(booking.code)
            return redirect(url_for("qr.ticket", code=booking.code, key=key, new=1))
    elif request.method == "POST" and not submitted:
        status = 400
    if not form.request_id.data:
        form.request_id.data = secrets.token_urlsafe(16)
    return _render_form("slots/book.html", slot, form, error, faults, status)


@bp.route("/slots/<int:slot_id>/waiting-list", methods=["GET", "POST"])
@limiter.limit(booking_ip_limit, methods=["POST"])
@limiter.limit(booking_nik_limit, key_func=nik_key, exempt_when=no_nik, methods=["POST"])
def join_waiting_list(slot_id: int):
    """Join a full slot's waiting list; on success, the waiting page with the position;
    a slot with room left sends the resident to its booking form."""
    slot = get_slot(slot_id)
    sold_out = day_sold_out(slot)
    if (
        request.method == "GET"
        and slot.remaining > 0
        and not sold_out
        and takes_bookings(slot, utcnow())
    ):
        return redirect(url_for("slots.book", slot_id=slot.id), 303)
    form = WaitingListForm()
    error, faults = None, {}
    status = 200
    submitted = form.validate_on_submit()
    if submitted:  # every field first, so several faults are reported together
        faults = _form_faults(form, slot)
        status = 422 if faults else status
    if submitted and not faults:
        name, nik, phone, kk = _typed(form)
        try:
            entry = slots_waiting.join_waiting_list(
                slot_id, name, nik, phone, language=_page_language(), kk=kk
            )
        except DomainError as exc:
            db.session.rollback()
            (error, faults), status = _refusal(exc), exc.status
            slot = get_slot(slot_id)
        else:  # the request's one commit follows
            key = waiting_access_key(entry.code)
            return redirect(url_for("slots.waiting", code=entry.code, key=key))
    elif request.method == "POST" and not submitted:
        status = 400
    return _render_form(
        "slots/waiting_join.html", slot, form, error, faults, status, sold_out=sold_out
    )


def _entry_from_url(code: str, key: str):
    entry = find_waiting_entry(code)
    if entry is None or not check_waiting_access_key(entry.code, key):
        abort(404)
    return entry


@bp.get("/waiting/<code>/<key>")
def waiting(code: str, key: str):
    """A waiting-list place: position in line, or the ticket once promoted."""
    entry = _entry_from_url(code, key)
    start, end = slot_local_times(entry.slot)
    ticket_url = None
    if entry.booking is not None:
        ticket_url = url_for(
            "qr.ticket", code=entry.booking.code, key=booking_access_key(entry.booking.code)
        )
    page = render_template(
        "slots/waiting.html",
        entry=entry,
        key=key,
        position=waiting_position(entry),
        start=start,
        end=end,
        ticket_url=ticket_url,
        leave_form=LeaveForm(),
    )
    return _no_store(page, 200)


@bp.post("/waiting/<code>/<key>/leave")
def leave_waiting_list(code: str, key: str):
    """Leave the waiting list."""
    entry = _entry_from_url(code, key)
    if not LeaveForm().validate_on_submit():
        abort(400)
    try:
        slots_waiting.leave_waiting_list(entry)
    except DomainError as exc:
        db.session.rollback()
        flash(str(exc.message), "error")
    else:
        flash(_("You have left the waiting list."), "ok")
    return redirect(url_for("slots.waiting", code=entry.code, key=key))

"""Resident pages: find a market point, pick a day and a slot, book it."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, redirect, render_template, request, url_for

from common.errors import DomainError
from common.timeutil import local_date, parse_day, utcnow
from extensions import db
from slots import bp, service
from slots.forms import BookingForm


@bp.get("/")
def index():
    """Search market points by name, kecamatan or city."""
    query = request.args.get("q", "")[:100]
    points = service.search_market_points(query)
    return render_template("slots/index.html", points=points, query=query)


@bp.get("/points/<code>")
def point(code: str):
    """A market point's slots on one local day, with places left."""
    market_point = service.get_market_point(code)
    today = local_date(utcnow(), market_point.timezone)
    days = [today + timedelta(days=i) for i in range(current_app.config["BOOKING_DAYS_AHEAD"])]
    try:
        day = parse_day(request.args.get("date", "")) if request.args.get("date") else today
    except ValueError:
        day = today
    now = utcnow()
    slots = [s for s in service.list_slots(market_point, day, now) if s.ends_at > now]
    return render_template("slots/point.html", point=market_point, day=day, days=days, slots=slots)


@bp.route("/slots/<int:slot_id>/book", methods=["GET", "POST"])
def book(slot_id: int):
    """The booking form; on success, the ticket page."""
    slot = service.get_slot(slot_id)
    form = BookingForm()
    error = None
    status = 200
    if form.validate_on_submit():
        try:
            booking = service.book_slot(
                slot_id, form.name.data or "", form.nik.data or "", form.phone.data or ""
            )
        except DomainError as exc:
            db.session.rollback()
            error, status = exc, exc.status
            slot = service.get_slot(slot_id)
            form.nik.data = ""  # never echo a full NIK back into the page
        else:
            db.session.commit()
            key = service.booking_access_key(booking.code)
            return redirect(url_for("qr.ticket", code=booking.code, key=key, new=1))
    elif request.method == "POST":
        status = 400
    start, end = service.slot_local_times(slot)
    page = render_template(
        "slots/book.html", slot=slot, form=form, error=error, start=start, end=end
    )
    return page, status, {"Cache-Control": "private, no-store"}

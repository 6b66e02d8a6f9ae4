"""Admin pages of one point-day's slots: capacity, closing a slot or a day, moving a
booking."""

from __future__ import annotations

from datetime import date

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from sqlalchemy import select

from accounts.auth import page_roles
from accounts.models import ADMIN
from admin import bp
from admin.forms import CapacityForm, MoveForm
from admin.pages import actor, done, failed, market_points
from common.errors import DomainError, ValidationError
from common.timeutil import local_date, local_day_bounds, parse_day, utcnow
from extensions import db
from slots import codes as slots_codes
from slots import staff as slots_staff
from slots.models import Slot


@bp.get("/slots")
@page_roles(ADMIN)
def slots():
    """One market point's slots of one local day (published or not), with their
    capacity, bookings, and the actions on them."""
    points = market_points()
    code = request.args.get("point") or (points[0].code if points else "")
    found = next((p for p in points if p.code == code), None)
    if found is None:
        return render_template("admin/slots.html", points=points, point=None, slots=[])
    day = _day(request.args.get("date")) or local_date(utcnow(), found.timezone)
    start, end = local_day_bounds(day, found.timezone)
    day_slots = db.session.scalars(
        select(Slot)
        .where(Slot.market_point_id == found.id, Slot.starts_at >= start, Slot.starts_at < end)
        .order_by(Slot.starts_at)
    ).all()
    return render_template(
        "admin/slots.html",
        points=points,
        point=found,
        day=day,
        slots=day_slots,
        tz=found.timezone,
        form=CapacityForm(),
        move_form=MoveForm(),
        now=utcnow(),
    )


def _day(text: str | None) -> date | None:
    """A local date from a form or query (YYYY-MM-DD), None when absent or malformed."""
    try:
        return parse_day(text) if text else None
    except ValueError:
        return None


def _back_to_slots(slot_id: int):
    slot = db.session.get(Slot, slot_id)
    if slot is None:
        return redirect(url_for("admin.slots"))
    day = local_date(slot.starts_at, slot.market_point.timezone)
    return redirect(url_for("admin.slots", point=slot.market_point.code, date=day.isoformat()))


@bp.post("/slots/<int:slot_id>/capacity")
@page_roles(ADMIN)
def slot_capacity(slot_id: int):
    """Change a slot's capacity (never below its booked places)."""
    form = CapacityForm()
    if form.validate_on_submit():
        try:
            slot = slots_staff.set_capacity(slot_id, form.capacity.data, actor())
        except DomainError as exc:
            failed(exc)
        else:
            done(_("Capacity is now %(capacity)d.", capacity=slot.capacity))
    else:
        flash(_("Give the capacity as a whole number."), "error")
    return _back_to_slots(slot_id)


@bp.post("/slots/<int:slot_id>/close")
@page_roles(ADMIN)
def slot_close(slot_id: int):
    """Close a slot: its bookings are cancelled and the residents told."""
    if FlaskForm().validate_on_submit():
        try:
            closed = slots_staff.close_slot(slot_id, actor())
        except DomainError as exc:
            failed(exc)
        else:
            done(
                _(
                    "Slot closed: %(count)d bookings cancelled.",
                    count=closed.bookings_cancelled,
                )
            )
    return _back_to_slots(slot_id)


@bp.post("/points/<code>/close-day")
@page_roles(ADMIN)
def close_day(code: str):
    """Close every slot of a market point on the posted local ``date``."""
    if FlaskForm().validate_on_submit():
        try:
            day = _day(request.form.get("date"))
            if day is None:
                raise ValidationError(_("The date is not valid."), code="invalid_date")
            closed = slots_staff.close_day(code, day, actor())
        except DomainError as exc:
            failed(exc)
        else:
            done(
                _(
                    "%(slots)d slots closed, %(count)d bookings cancelled.",
                    slots=closed.slots,
                    count=closed.bookings_cancelled,
                )
            )
        return redirect(url_for("admin.slots", point=code, date=request.form.get("date", "")))
    return redirect(url_for("admin.slots", point=code))


@bp.post("/bookings/move")
@page_roles(ADMIN)
def move_booking():
    """Move a confirmed booking to another slot with a free place."""
    form = MoveForm()
    if form.validate_on_submit():
        try:
            booking = slots_staff.move_booking(
                slots_codes.normalise_code(form.code.data or "") or "",
                form.slot_id.data,
                actor(),
            )
        except DomainError as exc:
            failed(exc)
        else:
            done(_("Booking %(code)s moved.", code=booking.code))
            return _back_to_slots(form.slot_id.data)
    else:
        flash(_("Give a booking code and a slot id."), "error")
    return redirect(request.referrer or url_for("admin.slots"))

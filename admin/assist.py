"""Assisted booking: staff book for a resident who has no phone, at their own market
point, under the same rules and limits as any booking, and print the ticket there."""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import HiddenField, SelectField, StringField, TelField
from wtforms.fields.choices import SelectChoice

from accounts.auth import page_roles
from accounts.models import ADMIN, STAFF, SUPERVISOR
from admin import bp
from common import audit
from common.errors import DomainError
from common.timeutil import clock_text, day_text, local_date, local_day_bounds, utcnow
from extensions import db
from slots.availability import open_slots
from slots.codes import booking_access_key
from slots.errors import SlotNotFound
from slots.models import MarketPoint, Slot
from slots.proxy import check_proxy, set_proxy
from slots.staff import book_for_resident


class AssistForm(FlaskForm):
    """A resident's details as staff take them at the desk; the phone may stay empty."""

    slot = SelectField(_l("Slot"), coerce=int)
    name = StringField(_l("Full name (as on KTP)"))
    nik = StringField(_l("NIK (16 digits)"))
    phone = TelField(_l("Mobile phone number (if they have one)"))
    kk = StringField(_l("Family card (KK) number, 16 digits"))
    # Optional: the person who collects for the resident (issue 15 part 3).
    proxy_name = StringField(_l("Collected by (name as on KTP), optional"))
    proxy_nik = StringField(_l("Their NIK (16 digits), optional"))
    request_id = HiddenField()


def _point() -> MarketPoint | None:
    """Staff: their own point. Supervisors and admins: the ``?point=`` they chose."""
    if current_user.role == STAFF:
        return current_user.market_point
    code = request.values.get("point")
    return db.session.scalar(select(MarketPoint).where(MarketPoint.code == code)) if code else None


def slot_choice_label(slot: Slot, tz_name: str) -> str:
    """One slot as the assisted-booking list shows it, in the page's language and the one
    date style (issue 14 item 12): ``Kamis, 4 Des 2026 · 09:00–09:30 · Sisa 12 tempat``.

    Args: slot, with ``remaining`` places (a count); tz_name, the point's IANA zone.
    """
    # The resident pages' own words for the count, so both say "Sisa 12 tempat".
    left = ngettext("%(num)d place left", "%(num)d places left", slot.remaining)
    start, end = clock_text(slot.starts_at, tz_name), clock_text(slot.ends_at, tz_name)
    return f"{day_text(slot.starts_at, tz_name)} · {start}–{end} · {left}"


def _open_slots(point: MarketPoint) -> list[Slot]:
    """Bookable slots of ``point`` from now to the end of tomorrow (local time)."""
    now = utcnow()
    today = local_date(now, point.timezone)
    start = local_day_bounds(today, point.timezone)[0]
    end = local_day_bounds(today + timedelta(days=1), point.timezone)[1]
    return open_slots(point, start, end, now)


@bp.route("/assist", methods=["GET", "POST"])
@page_roles(STAFF, SUPERVISOR, ADMIN)
def assist():
    """Book on behalf of a resident (same rules and per-NIK limit), then show the
    ticket to print. Staff book only at their own point."""
    point = _point()
    if point is None:
        if current_user.role == STAFF:
            abort(403)
        points = db.session.scalars(
            select(MarketPoint).where(MarketPoint.active.is_(True)).order_by(MarketPoint.name)
        ).all()
        return render_template("admin/assist_choose.html", points=points)
    slots = _open_slots(point)
    form = AssistForm()
    form.slot.choices = [SelectChoice(s.id, slot_choice_label(s, point.timezone)) for s in slots]
    status = 200
    if form.validate_on_submit():
        fields = (form.name.data or "", form.nik.data or "", form.phone.data or "")
        proxy = (form.proxy_name.data or "", form.proxy_nik.data or "")
        try:
            if form.slot.data not in {s.id for s in slots}:
                raise SlotNotFound()
            if any(part.strip() for part in proxy):  # both asked for, before booking
                check_proxy(*proxy)
            booking = book_for_resident(
                form.slot.data,
                fields,
                form.kk.data or "",
                form.request_id.data or secrets.token_urlsafe(16),
                audit.Actor.of(current_user, request.remote_addr),
            )
            if any(part.strip() for part in proxy):
                set_proxy(booking, *proxy)  # refused: the booking is rolled back with it
        except DomainError as exc:
            db.session.rollback()
            message = str(exc.message)
            if any(field.startswith("proxy_") for field in exc.fields):  # whose NIK it is
                message = str(_l("Collected by: %(message)s", message=message))
            flash(message, "error")
            status = exc.status
            form.nik.data = ""  # never echo a full NIK back into the page
            form.proxy_nik.data = ""
        else:  # the request's one commit follows (common.transactions.run_view)
            key = booking_access_key(booking.code)
            return redirect(url_for("qr.ticket", code=booking.code, key=key, new=1))
    form.request_id.data = secrets.token_urlsafe(16)
    return (
        render_template("admin/assist.html", point=point, form=form, has_slots=bool(slots)),
        status,
    )

"""Admin pages over the services of the other blueprints; admins only.

Every action is a POST with a CSRF token; the services record it in the audit log in
the same transaction. Errors come back as a flashed message on the same page.
"""

from __future__ import annotations

from datetime import date, timedelta

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from accounts import service as accounts_service
from accounts.auth import page_roles
from accounts.models import ADMIN
from admin import bp
from admin.forms import (
    AccountForm,
    AssignForm,
    AuditFilterForm,
    CapacityForm,
    ImportForm,
    MoveForm,
    PasswordForm,
    PointForm,
    ScheduleForm,
)
from common import audit
from common.errors import DomainError, ValidationError
from common.timeutil import local_date, local_day_bounds, parse_day, utcnow, zone
from extensions import db
from notify.outbox import failed_notices, outbox_counts, retry_now
from notify.relay import commit_and_deliver
from slots import staff as slots_staff
from slots.codes import normalise_code
from slots.errors import InvalidMarketPoint
from slots.models import MarketPoint, Schedule, Slot
from slots.points import (
    PointFields,
    create_point,
    export_points_csv,
    get_point,
    import_points_csv,
    set_point_active,
    update_point,
)
from slots.schedules import create_schedule, generate_from_schedule, get_schedule, plan_schedule
from slots.staff import close_slot, set_capacity


def _actor() -> audit.Actor:
    return audit.Actor.of(current_user, request.remote_addr)


def _points() -> list[MarketPoint]:
    return list(db.session.scalars(select(MarketPoint).order_by(MarketPoint.code)))


def _point_choices(blank: bool = False) -> list[SelectChoice]:
    choices = [SelectChoice(p.code, f"{p.code} {p.name}") for p in _points()]
    return ([SelectChoice("", "-")] if blank else []) + choices


def _done(message: str) -> None:
    commit_and_deliver()
    flash(message, "ok")


def _failed(exc: DomainError) -> None:
    db.session.rollback()
    flash(str(exc.message), "error")


@bp.get("/")
@page_roles(ADMIN)
def home():
    """The admin's start page: what there is to run."""
    return render_template("admin/home.html", counts=outbox_counts())


# Market points ------------------------------------------------------------------------


def _fields(form: PointForm) -> PointFields:
    return PointFields(
        name=form.name.data or "",
        address=form.address.data or "",
        kecamatan=form.kecamatan.data or "",
        kecamatan_code=form.kecamatan_code.data or "",
        city=form.city.data or "",
        safe_limit=form.safe_limit.data,
        timezone=(form.timezone.data or "").strip(),
        opens_at=form.opens_at.data,
        closes_at=form.closes_at.data,
        household_limit=bool(form.household_limit.data),
    )


@bp.route("/points", methods=["GET", "POST"])
@page_roles(ADMIN)
def points():
    """Every market point; a form to create one; CSV import and export."""
    form = PointForm()
    if form.validate_on_submit():
        if form.market_id.data is None:
            flash(_("Give the market number."), "error")
        else:
            try:
                point = create_point(form.market_id.data, _fields(form), _actor())
            except DomainError as exc:
                _failed(exc)
            else:
                _done(_("Market point %(code)s created.", code=point.code))
                return redirect(url_for("admin.points"))
    return render_template(
        "admin/points.html", points=_points(), form=form, import_form=ImportForm()
    )


@bp.route("/points/<code>", methods=["GET", "POST"])
@page_roles(ADMIN)
def point(code: str):
    """Edit one market point, deactivate or reactivate it."""
    try:
        found = get_point(code)
    except DomainError:
        abort(404)
    form = PointForm(obj=found)
    if form.validate_on_submit():
        try:
            update_point(code, _fields(form), _actor())
        except DomainError as exc:
            _failed(exc)
        else:
            _done(_("Saved."))
            return redirect(url_for("admin.point", code=code))
    return render_template("admin/point.html", point=found, form=form, toggle=FlaskForm())


@bp.post("/points/<code>/active")
@page_roles(ADMIN)
def point_active(code: str):
    """Deactivate (``active=0``) or reactivate (``active=1``) a market point."""
    if FlaskForm().validate_on_submit():
        try:
            set_point_active(code, request.form.get("active") == "1", _actor())
        except DomainError as exc:
            _failed(exc)
        else:
            _done(_("Saved."))
    return redirect(url_for("admin.point", code=code))


@bp.get("/points.csv")
@page_roles(ADMIN)
def points_csv():
    """Every market point as CSV in the shipped data's columns."""
    return Response(
        "\ufeff" + export_points_csv(),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=antri-market-points.csv"},
    )


@bp.post("/points/import")
@page_roles(ADMIN)
def points_import():
    """Create or update market points from an uploaded CSV (shipped data's columns)."""
    form = ImportForm()
    if form.validate_on_submit() and form.file.data:
        raw = form.file.data.read(2_000_001)
        try:
            if len(raw) > 2_000_000:
                raise InvalidMarketPoint(fault="csv", too_large=True)
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            flash(_("The file is not UTF-8 text."), "error")
            return redirect(url_for("admin.points"))
        except DomainError as exc:
            _failed(exc)
            return redirect(url_for("admin.points"))
        try:
            created, updated = import_points_csv(text, _actor())
        except DomainError as exc:
            _failed(exc)
        else:
            _done(_("%(created)d created, %(updated)d updated.", created=created, updated=updated))
    else:
        flash(_("Choose a CSV file."), "error")
    return redirect(url_for("admin.points"))


# Schedules ----------------------------------------------------------------------------


@bp.route("/schedules", methods=["GET", "POST"])
@page_roles(ADMIN)
def schedules():
    """Every schedule; a form to create one (then its preview)."""
    form = ScheduleForm()
    form.point.choices = _point_choices()
    if request.method == "GET":
        today = local_date(utcnow(), current_app.config["DEFAULT_TIMEZONE"])
        form.valid_from.data = form.valid_from.data or today + timedelta(days=1)
        form.valid_until.data = form.valid_until.data or today + timedelta(days=7)
    if form.validate_on_submit():
        try:
            schedule = create_schedule(
                form.point.data,
                name=form.name.data or "",
                weekdays="".join(form.weekdays.data or []),
                start_time=form.start_time.data,
                end_time=form.end_time.data,
                slot_minutes=form.slot_minutes.data,
                capacity=form.capacity.data,
                valid_from=form.valid_from.data,
                valid_until=form.valid_until.data,
                publish_days_before=form.publish_days_before.data,
                publish_time=form.publish_time.data,
                actor=_actor(),
            )
        except DomainError as exc:
            _failed(exc)
        else:
            _done(_("Schedule saved. Check the preview, then create its slots."))
            return redirect(url_for("admin.schedule", schedule_id=schedule.id))
    listed = db.session.scalars(select(Schedule).order_by(Schedule.id.desc())).all()
    return render_template("admin/schedules.html", schedules=listed, form=form)


@bp.get("/schedules/<int:schedule_id>")
@page_roles(ADMIN)
def schedule(schedule_id: int):
    """A schedule's preview: every slot it makes, in local time, and when each opens."""
    try:
        found = get_schedule(schedule_id)
    except DomainError:
        abort(404)
    planned = plan_schedule(found)
    return render_template(
        "admin/schedule.html",
        schedule=found,
        planned=planned,
        tz=zone(found.market_point.timezone),
        new=sum(1 for p in planned if not p.exists),
        overlaps=sum(1 for p in planned if p.overlaps),
        form=FlaskForm(),
    )


@bp.post("/schedules/<int:schedule_id>/generate")
@page_roles(ADMIN)
def schedule_generate(schedule_id: int):
    """Create the schedule's slots (idempotent); each opens at its publish time."""
    if FlaskForm().validate_on_submit():
        try:
            created, existing = generate_from_schedule(schedule_id, _actor())
        except DomainError as exc:
            _failed(exc)
        else:
            _done(
                _(
                    "%(created)d slots created, %(existing)d already existed.",
                    created=created,
                    existing=existing,
                )
            )
    return redirect(url_for("admin.schedule", schedule_id=schedule_id))


# Slots: capacity, closing, moving -------------------------------------------------------


@bp.get("/slots")
@page_roles(ADMIN)
def slots():
    """One market point's slots of one local day (published or not), with their
    capacity, bookings, and the actions on them."""
    points = _points()
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
        tz=zone(found.timezone),
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
            slot = set_capacity(slot_id, form.capacity.data, _actor())
        except DomainError as exc:
            _failed(exc)
        else:
            _done(_("Capacity is now %(capacity)d.", capacity=slot.capacity))
    else:
        flash(_("Give the capacity as a whole number."), "error")
    return _back_to_slots(slot_id)


@bp.post("/slots/<int:slot_id>/close")
@page_roles(ADMIN)
def slot_close(slot_id: int):
    """Close a slot: its bookings are cancelled and the residents told."""
    if FlaskForm().validate_on_submit():
        try:
            closed = close_slot(slot_id, _actor())
        except DomainError as exc:
            _failed(exc)
        else:
            _done(
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
            closed = slots_staff.close_day(code, day, _actor())
        except DomainError as exc:
            _failed(exc)
        else:
            _done(
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
                normalise_code(form.code.data or "") or "",
                form.slot_id.data,
                _actor(),
            )
        except DomainError as exc:
            _failed(exc)
        else:
            _done(_("Booking %(code)s moved.", code=booking.code))
            return _back_to_slots(form.slot_id.data)
    else:
        flash(_("Give a booking code and a slot id."), "error")
    return redirect(request.referrer or url_for("admin.slots"))


# Accounts -------------------------------------------------------------------------------


@bp.route("/accounts", methods=["GET", "POST"])
@page_roles(ADMIN)
def accounts():
    """Every account and bearer token; a form to create an account."""
    form = AccountForm()
    form.point.choices = _point_choices(blank=True)
    if form.validate_on_submit():
        try:
            point = get_point(form.point.data) if form.point.data else None
            accounts_service.admin_create_user(
                form.email.data, form.role.data, form.password.data, point, _actor()
            )
        except DomainError as exc:
            _failed(exc)
        else:
            _done(_("Account saved."))
            return redirect(url_for("admin.accounts"))
    return render_template(
        "admin/accounts.html",
        users=accounts_service.list_users(),
        tokens=accounts_service.list_tokens(),
        form=form,
        action=FlaskForm(),
        password_form=PasswordForm(),
        assign_form=AssignForm(),
        point_choices=_point_choices(blank=True),
    )


def _account_action(user_id: int, action) -> Response:
    if FlaskForm().validate_on_submit():
        try:
            user = accounts_service.get_user(user_id)
            action(user)
        except DomainError as exc:
            _failed(exc)
        else:
            _done(_("Account saved."))
    return redirect(url_for("admin.accounts"))


@bp.post("/accounts/<int:user_id>/active")
@page_roles(ADMIN)
def account_active(user_id: int):
    """Disable (``active=0``) or enable (``active=1``) an account."""
    active = request.form.get("active") == "1"
    return _account_action(
        user_id, lambda user: accounts_service.set_user_active(user, active, _actor())
    )


@bp.post("/accounts/<int:user_id>/password")
@page_roles(ADMIN)
def account_password(user_id: int):
    """Set a new password for an account."""
    password = request.form.get("password", "")
    return _account_action(
        user_id, lambda user: accounts_service.reset_password(user, password, _actor())
    )


@bp.post("/accounts/<int:user_id>/point")
@page_roles(ADMIN)
def account_point(user_id: int):
    """Assign an account to a market point."""
    code = request.form.get("point", "")

    def assign(user):
        point = get_point(code) if code else None
        accounts_service.assign_point(user, point, _actor())

    return _account_action(user_id, assign)


@bp.post("/tokens/<int:token_id>/revoke")
@page_roles(ADMIN)
def token_revoke(token_id: int):
    """Revoke a bearer token: the next request with it gets 401."""
    if FlaskForm().validate_on_submit():
        try:
            accounts_service.revoke_token_id(token_id, _actor())
        except DomainError as exc:
            _failed(exc)
        else:
            _done(_("Token revoked."))
    return redirect(url_for("admin.accounts"))


# Audit log ------------------------------------------------------------------------------


def _audit_entries(form: AuditFilterForm, limit: int) -> list[audit.AuditEntry]:
    tz = current_app.config["DEFAULT_TIMEZONE"]
    since = local_day_bounds(form.since.data, tz)[0] if form.since.data else None
    until = local_day_bounds(form.until.data, tz)[1] if form.until.data else None
    return audit.search(
        action=(form.action.data or "").strip(),
        actor=(form.actor.data or "").strip(),
        since=since,
        until=until,
        limit=limit,
    )


@bp.get("/audit")
@page_roles(ADMIN)
def audit_log():
    """The audit log, newest first, filtered by action, actor and local dates."""
    form = AuditFilterForm(request.args)
    entries = _audit_entries(form, 500) if form.validate() else []
    tz = zone(current_app.config["DEFAULT_TIMEZONE"])
    return render_template("admin/audit.html", form=form, entries=entries, tz=tz)


@bp.get("/audit.csv")
@page_roles(ADMIN)
def audit_csv():
    """The filtered audit log as CSV (UTF-8 with BOM, instants in UTC)."""
    form = AuditFilterForm(request.args)
    entries = _audit_entries(form, 100_000) if form.validate() else []
    return Response(
        "\ufeff" + audit.to_csv(entries),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=antri-audit.csv"},
    )


# Messages -------------------------------------------------------------------------------


@bp.get("/notices")
@page_roles(ADMIN)
def notices():
    """The outbox: counts per status and every message that failed, with its error."""
    return render_template(
        "admin/notices.html",
        counts=outbox_counts(),
        failed=failed_notices(),
        form=FlaskForm(),
    )


@bp.post("/notices/retry")
@page_roles(ADMIN)
def retry_notices():
    """Make failed notices (and those waiting out a back-off) due again, now."""
    form = FlaskForm()
    if form.validate_on_submit():
        count = retry_now(actor=_actor())
        flash(_("%(count)d messages will be sent again.", count=count), "ok")
    return redirect(url_for("admin.notices"))

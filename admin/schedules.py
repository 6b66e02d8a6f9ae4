"""Admin pages of slot schedules: list, create, preview, create their slots."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from sqlalchemy import select

from accounts.auth import page_roles
from accounts.models import ADMIN
from admin import bp
from admin.forms import ScheduleForm
from admin.pages import actor, done, failed, point_choices
from common.errors import DomainError
from common.timeutil import local_date, utcnow
from extensions import db
from slots import schedules as slots_schedules
from slots.models import Schedule


@bp.route("/schedules", methods=["GET", "POST"])
@page_roles(ADMIN)
def schedules():
    """Every schedule; a form to create one (then its preview)."""
    form = ScheduleForm()
    form.point.choices = point_choices()
    if request.method == "GET":
        today = local_date(utcnow(), current_app.config["DEFAULT_TIMEZONE"])
        form.valid_from.data = form.valid_from.data or today + timedelta(days=1)
        form.valid_until.data = form.valid_until.data or today + timedelta(days=7)
    if form.validate_on_submit():
        try:
            schedule = slots_schedules.create_schedule(
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
                actor=actor(),
            )
        except DomainError as exc:
            failed(exc)
        else:
            done(_("Schedule saved. Check the preview, then create its slots."))
            return redirect(url_for("admin.schedule", schedule_id=schedule.id))
    listed = db.session.scalars(select(Schedule).order_by(Schedule.id.desc())).all()
    return render_template("admin/schedules.html", schedules=listed, form=form)


@bp.get("/schedules/<int:schedule_id>")
@page_roles(ADMIN)
def schedule(schedule_id: int):
    """A schedule's preview: every slot it makes, in local time, and when each opens."""
    try:
        found = slots_schedules.get_schedule(schedule_id)
    except DomainError:
        abort(404)
    planned = slots_schedules.plan_schedule(found)
    return render_template(
        "admin/schedule.html",
        schedule=found,
        planned=planned,
        tz=found.market_point.timezone,
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
            created, existing = slots_schedules.generate_from_schedule(schedule_id, actor())
        except DomainError as exc:
            failed(exc)
        else:
            done(
                _(
                    "%(created)d slots created, %(existing)d already existed.",
                    created=created,
                    existing=existing,
                )
            )
    return redirect(url_for("admin.schedule", schedule_id=schedule_id))

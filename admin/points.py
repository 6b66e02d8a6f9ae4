"""Admin pages of market points: list, create, edit, (de)activate, CSV import/export."""

from __future__ import annotations

from datetime import date, timedelta

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm

from accounts.auth import page_roles
from accounts.models import ADMIN
from admin import bp
from admin.forms import BallotForm, ImportForm, PointForm, StockForm
from admin.pages import actor, done, failed, market_points
from ballots import rounds as ballots_rounds
from common.errors import DomainError
from common.timeutil import local_date, utcnow, zone
from extensions import db
from slots import errors as slots_errors
from slots import points as slots_points
from slots import stock as slots_stock


def _fields(form: PointForm) -> slots_points.PointFields:
    return slots_points.PointFields(
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
                point = slots_points.create_point(form.market_id.data, _fields(form), actor())
            except DomainError as exc:
                failed(exc)
            else:
                done(_("Market point %(code)s created.", code=point.code))
                return redirect(url_for("admin.points"))
    return render_template(
        "admin/points.html", points=market_points(), form=form, import_form=ImportForm()
    )


@bp.route("/points/<code>", methods=["GET", "POST"])
@page_roles(ADMIN)
def point(code: str):
    """Edit one market point, deactivate or reactivate it."""
    try:
        found = slots_points.get_point(code)
    except DomainError:
        abort(404)
    form = PointForm(obj=found)
    if form.validate_on_submit():
        try:
            slots_points.update_point(code, _fields(form), actor())
        except DomainError as exc:
            failed(exc)
        else:
            done(_("Saved."))
            return redirect(url_for("admin.point", code=code))
    return _point_page(found, form)


def _point_page(
    point,
    form: PointForm,
    stock_form: StockForm | None = None,
    status: int = 200,
    ballot_form: BallotForm | None = None,
):
    """Render the point's page: its edit form, the stock table and form (``stock_form``
    sent back with its faults beside its fields), its ballots and the ballot form
    (issue 16), with HTTP ``status``."""
    today = _today(point)
    days = [today + timedelta(days=n) for n in range(STOCK_DAYS_SHOWN)]
    ballots = sorted(ballots_rounds.point_ballots(point, days).values(), key=lambda b: b.day)
    return render_template(
        "admin/point.html",
        point=point,
        form=form,
        toggle=FlaskForm(),
        stock_form=stock_form or StockForm(formdata=None, day=today),
        stock=_stock_ahead(point),
        ballot_form=ballot_form or BallotForm(formdata=None, day=today + timedelta(days=1)),
        ballots=[ballots_rounds.view(b) for b in ballots],
    ), status


def _today(point) -> date:
    return local_date(utcnow(), point.timezone)


def _stock_ahead(point) -> list[tuple[date, slots_stock.StockLevel]]:
    """The point's stock settings from today, for the next STOCK_DAYS_SHOWN days."""
    today = _today(point)
    days = [today + timedelta(days=n) for n in range(STOCK_DAYS_SHOWN)]
    return sorted(slots_stock.day_levels(point, days).items())


STOCK_DAYS_SHOWN = 14


@bp.post("/points/<code>/stock")
@page_roles(ADMIN)
def point_stock(code: str):
    """Set the point's stock on a local date (issue 15): packages and per booking."""
    try:
        found = slots_points.get_point(code)
    except DomainError:
        abort(404)
    form = StockForm()
    if form.validate_on_submit():
        try:
            slots_stock.set_stock(
                code, form.day.data, form.packages.data, form.per_booking.data, actor()
            )
        except DomainError as exc:
            db.session.rollback()
            # Beside the field it is about (issue 14 item 8): the API's ``fields``, or
            # the packages for ``stock_below_reserved``.
            faults = exc.fields or {"packages": exc.message}
            for name, message in faults.items():
                field = form._fields.get(name, form.packages)
                field.errors = [*field.errors, str(message)]
            if "reserved" in exc.details:
                form.packages.errors.append(
                    _("Reserved now: %(reserved)d.", reserved=exc.details["reserved"])
                )
            status = exc.status
        else:
            done(_("Stock saved."))
            return redirect(url_for("admin.point", code=code))
    else:
        status = 422
    return _point_page(found, PointForm(obj=found), form, status)


@bp.post("/points/<code>/ballot")
@page_roles(ADMIN)
def point_ballot(code: str):
    """Open a ballot over the point's slots on a local date (issue 16), audited."""
    try:
        found = slots_points.get_point(code)
    except DomainError:
        abort(404)
    form = BallotForm()
    if form.validate_on_submit():
        tz = zone(found.timezone)
        try:
            ballot = ballots_rounds.create_ballot(
                code,
                form.day.data,
                form.opens.data.replace(tzinfo=tz),
                form.closes.data.replace(tzinfo=tz),
                actor(),
            )
        except DomainError as exc:
            db.session.rollback()
            form.day.errors = [*form.day.errors, str(exc.message)]
            status = exc.status
        else:
            done(_("Ballot %(id)d opened.", id=ballot.id))
            return redirect(url_for("admin.point", code=code))
    else:
        status = 422
    return _point_page(found, PointForm(obj=found), None, status, form)


@bp.post("/points/<code>/active")
@page_roles(ADMIN)
def point_active(code: str):
    """Deactivate (``active=0``) or reactivate (``active=1``) a market point."""
    if FlaskForm().validate_on_submit():
        try:
            slots_points.set_point_active(code, request.form.get("active") == "1", actor())
        except DomainError as exc:
            failed(exc)
        else:
            done(_("Saved."))
    return redirect(url_for("admin.point", code=code))


@bp.get("/points.csv")
@page_roles(ADMIN)
def points_csv():
    """Every market point as CSV in the shipped data's columns."""
    return Response(
        "\ufeff" + slots_points.export_points_csv(),
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
                raise slots_errors.InvalidMarketPoint(fault="csv", too_large=True)
            text = slots_points.decode_csv_bytes(raw)  # the one decoding (issue 14 item 5)
        except DomainError as exc:
            failed(exc)
            return redirect(url_for("admin.points"))
        try:
            created, updated = slots_points.import_points_csv(text, actor())
        except DomainError as exc:
            failed(exc)
        else:
            done(_("%(created)d created, %(updated)d updated.", created=created, updated=updated))
    else:
        flash(_("Choose a CSV file."), "error")
    return redirect(url_for("admin.points"))

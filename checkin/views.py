"""Staff gate page and supervisor overview."""

from __future__ import annotations

from flask import flash, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from accounts.auth import page_roles
from accounts.models import ADMIN, STAFF, SUPERVISOR
from checkin import bp, service
from checkin.forms import ScanForm
from common.timeutil import utcnow
from extensions import db
from slots import service as slots_service
from slots.models import MarketPoint


def _gate_point() -> MarketPoint | None:
    """Staff: their own point. Supervisors and admins: the ``?point=`` they chose."""
    if current_user.role == STAFF:
        return current_user.market_point
    code = request.args.get("point")
    return slots_service.get_market_point(code) if code else None


@bp.route("/gate", methods=["GET", "POST"])
@page_roles(STAFF, SUPERVISOR, ADMIN)
def gate():
    """Scan tickets at one market point's gate; shows admit or refuse, and inside now."""
    point = _gate_point()
    if point is None:
        points = db.session.scalars(
            select(MarketPoint).where(MarketPoint.active.is_(True)).order_by(MarketPoint.name)
        )
        return render_template("checkin/choose_point.html", points=list(points))
    form = ScanForm()
    result = None
    if form.validate_on_submit():
        scanned = (form.scan.data or "").strip("\r\n\t")
        if scanned.strip():
            scan = service.check_out if form.direction.data == "out" else service.check_in
            result = scan(scanned, point, current_user, device="gate-page")
            db.session.commit()
        else:  # a stray Enter from a scanner: stay on the gate, ready
            flash(_("Nothing was scanned. Scan the QR code or type the booking code."), "error")
        form.scan.data = ""
    inside = service.inside_now([point.id])[point.id]
    return render_template(
        "checkin/gate.html", point=point, form=form, result=result, inside=inside
    )


@bp.get("/supervisor")
@page_roles(SUPERVISOR, ADMIN)
def supervisor():
    """Every market point: inside now against its safe limit, and today's slots."""
    now = utcnow()
    points = list(
        db.session.scalars(
            select(MarketPoint)
            .where(MarketPoint.active.is_(True))
            .order_by(MarketPoint.city, MarketPoint.name)
        )
    )
    inside = service.inside_now([p.id for p in points], now)
    stats = service.slot_stats(points, now)
    # Fullest first: the points that may need a held gate come to the top.
    points.sort(key=lambda p: -inside[p.id] / p.safe_limit)
    return render_template(
        "checkin/supervisor.html", points=points, inside=inside, stats=stats, now=now
    )

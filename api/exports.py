"""``/api/v1/exports``: a day's bookings and check-ins as CSV."""

from __future__ import annotations

from flask import Response, current_app

from accounts.auth import api_or_page_roles
from accounts.models import ADMIN, STAFF, SUPERVISOR
from api import bp
from api.access import visible_points
from api.schemas import ExportQuery
from api.spec import validate
from checkin import exports
from common.timeutil import local_date, utcnow


@bp.get("/exports/bookings.csv")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
@validate(404, 422, media="text/csv", auth=True, tags=("exports",))
def export_bookings(query: ExportQuery):
    """A day's bookings and check-ins as CSV (checkin/exports.py says what is in it):
    ``?date=YYYY-MM-DD`` (default today where the first point is; 422 ``invalid_date``
    otherwise) and ``market_point=CODE`` (default all the caller may see)."""
    code = query.market_point
    points = visible_points(code)
    day = query.date
    if day is None:
        tz_name = points[0].timezone if points else current_app.config["DEFAULT_TIMEZONE"]
        day = local_date(utcnow(), tz_name)
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

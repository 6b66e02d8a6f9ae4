"""``/api/v1/market-points/<code>/stock/<date>``: a point's stock on one local date
(issue 15). Admins set it; supervisors and admins read it."""

from __future__ import annotations

from datetime import date

from flask import g, jsonify, request

from accounts.auth import api_roles
from accounts.models import ADMIN, SUPERVISOR
from api import bp
from api.responses import StockOut
from api.schemas import StockBody
from api.spec import validate
from common.audit import Actor
from common.db import run_with_retry
from common.errors import ValidationError
from common.timeutil import parse_day
from slots import points as slots_points
from slots import stock as slots_stock
from slots.models import MarketPoint
from slots.stock import StockLevel


def _day(text: str) -> date:
    """The path's local date; 422 ``invalid_date`` for another format or year."""
    try:
        return parse_day(text)
    except ValueError:
        raise ValidationError(
            "The date must be YYYY-MM-DD between 2000 and 2100.",
            code="invalid_date",
            fields={"date": "must be a date YYYY-MM-DD between 2000 and 2100"},
        ) from None


def stock_json(point: MarketPoint, day: date, level: StockLevel) -> dict:
    """``StockOut``: the point's code, the local date and the stock's counts."""
    return {
        "market_point": point.code,
        "date": day.isoformat(),
        "packages": level.packages,
        "per_booking": level.per_booking,
        "reserved": level.reserved,
        "handed_out": level.handed_out,
        "left": level.left,
    }


@bp.put("/market-points/<code>/stock/<day>")
@api_roles(ADMIN)
@validate(404, 409, 413, 422, ok=StockOut, auth=True, tags=("admin",))
def put_stock(code: str, day: str, json: StockBody):
    """Set a point's stock on a local date: ``{packages, per_booking}`` -> 200 with the
    stock. The first setting makes the day's active bookings reserve ``per_booking``
    each. 409 ``stock_below_reserved`` (with ``reserved``) when ``packages`` is below
    what is reserved; 422 ``invalid_stock`` or ``invalid_date``; 404
    ``market_point_not_found``. Audited."""
    on_day = _day(day)

    def change():
        actor = Actor.of(g.api_user, request.remote_addr)
        level = slots_stock.set_stock(code, on_day, json.packages, json.per_booking, actor)
        return level

    level = run_with_retry(change)
    point = slots_points.get_point(code)
    return jsonify(stock_json(point, on_day, level))


@bp.get("/market-points/<code>/stock/<day>")
@api_roles(SUPERVISOR, ADMIN)
@validate(404, 422, ok=StockOut, auth=True, tags=("admin",))
def get_stock(code: str, day: str):
    """A point's stock on a local date -> 200 ``{market_point, date, packages,
    per_booking, reserved, handed_out, left}``; 404 ``stock_not_set`` when the point-day
    has no setting (no stock limit that day), ``market_point_not_found``; 422
    ``invalid_date``."""
    on_day = _day(day)
    point, level = slots_stock.get_stock(code, on_day)
    return jsonify(stock_json(point, on_day, level))

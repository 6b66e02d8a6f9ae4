"""``/api/v1/market-points``: where goods are handed out, and their slots (public)."""

from __future__ import annotations

from flask import jsonify

from api import bp
from api.responses import MarketPointOut, SlotOut, market_point_json, slot_json
from api.schemas import DayQuery, PointSearch
from api.spec import validate
from common.timeutil import local_date, utcnow
from slots import availability as slots_availability
from slots import points as slots_points
from slots import stock as slots_stock


@bp.get("/market-points")
@validate(422, ok=list[MarketPointOut], tags=("market points",))
def market_points(query: PointSearch):
    """List active market points; ``?q=`` filters by name, kecamatan or city."""
    points = slots_points.search_market_points(query.q)
    return jsonify([market_point_json(p) for p in points])


@bp.get("/market-points/<code>/slots")
@validate(404, 422, ok=list[SlotOut], tags=("market points",))
def market_point_slots(code: str, query: DayQuery):
    """List a point's published slots on ``?date=YYYY-MM-DD`` (local date; default today).

    Each slot's ``sold_out`` is true when the day's stock cannot cover one more booking
    (a booking answers 409 ``sold_out``; its waiting list stays open).
    422 ``invalid_date`` for another format or a year outside 2000-2100.
    """
    point = slots_points.get_market_point(code)
    day = query.date or local_date(utcnow(), point.timezone)
    slots = slots_availability.list_slots(point, day)
    sold_out = slots_stock.sold_out_days(point, [day])
    # A slot's stock day is its own local date (the list is the point's local day).
    return jsonify([slot_json(s, slots_stock.slot_day(s) in sold_out) for s in slots])

"""Which market points the API's caller (``g.api_user``) acts at or may watch."""

from __future__ import annotations

from flask import g

from accounts.models import STAFF
from checkin import occupancy as checkin_occupancy
from common.errors import Forbidden, ValidationError
from slots import points as slots_points
from slots.models import MarketPoint


def gate_point(code: str | None) -> MarketPoint:
    """The gate's market point: ``code``, or a staff member's own when None.

    Raises: ValidationError 422 ``invalid_market_point`` when a supervisor or admin
      names none; MarketPointNotFound (404) for an unknown code. Whether the caller
      may scan there is the scan's own rule (it refuses ``wrong_point``).
    """
    user = g.api_user
    if code is None and user.role == STAFF:
        return user.market_point
    if code is not None:
        return slots_points.get_market_point(code)
    message = "Name the gate's 'market_point' (staff default to their own)."
    raise ValidationError(message, code="invalid_market_point", fields={"market_point": message})


def visible_points(code: str | None) -> list[MarketPoint]:
    """The points the caller may watch, or only ``code`` among them.

    Staff see their own point only. Raises: MarketPointNotFound (404) for an unknown
    code, Forbidden (403) for staff naming another point.
    """
    user = g.api_user
    if code is not None:
        point = slots_points.get_market_point(code)
        if not user.can_act_at(point):
            raise Forbidden()
        return [point]
    if user.role == STAFF:
        return [user.market_point] if user.market_point is not None else []
    return checkin_occupancy.active_points()

"""Admin API (``/api/v1``): the market operation actions operators script. Admin
bearer tokens only; staff and supervisor tokens get 403."""

from __future__ import annotations

from flask import g, jsonify, request

from accounts.auth import api_roles
from accounts.models import ADMIN
from api import bp
from api.schemas import booking_json, slot_json
from api.views import _json_body
from common.audit import Actor
from common.db import run_with_retry
from common.errors import ValidationError
from notify.relay import commit_and_deliver
from slots import staff as slots_staff
from slots.staff import set_capacity


def _actor() -> Actor:
    return Actor.of(g.api_user, request.remote_addr)


@bp.patch("/slots/<int:slot_id>")
@api_roles(ADMIN)
def update_slot(slot_id: int):
    """Change a slot's capacity: ``{capacity}`` -> 200 with the slot, 409
    ``capacity_below_booked`` (with ``booked``) when places are booked beyond it."""
    body = _json_body()
    if set(body) != {"capacity"}:
        raise ValidationError('Send exactly {"capacity": n}.', code="invalid_capacity")

    def change():
        slot = set_capacity(slot_id, body["capacity"], _actor())
        answer = {**slot_json(slot), "booked": slot.booked_count}
        commit_and_deliver()  # promotions from the waiting list are notified
        return answer

    return jsonify(run_with_retry(change))


@bp.post("/slots/<int:slot_id>/close")
@api_roles(ADMIN)
def close_slot(slot_id: int):
    """Close a slot -> 200 ``{slot_id, cancelled, waiting_cleared}``: its confirmed
    bookings are cancelled (one ``slot_closed`` notice each), its waiting list cleared.
    Closing a closed slot answers 200 with zeros."""

    def close():
        closed = slots_staff.close_slot(slot_id, _actor())
        commit_and_deliver()
        return closed

    closed = run_with_retry(close)
    return jsonify(
        {
            "slot_id": slot_id,
            "cancelled": closed.bookings_cancelled,
            "waiting_cleared": closed.waiting_cleared,
        }
    )


@bp.post("/bookings/<code>/move")
@api_roles(ADMIN)
def move_booking(code: str):
    """Move a confirmed booking: ``{slot_id}`` -> 200 with the booking; 409
    ``slot_full``, ``booking_not_movable`` or ``already_booked``."""
    body = _json_body()
    slot_id = body.get("slot_id")
    if not isinstance(slot_id, int) or isinstance(slot_id, bool):
        raise ValidationError("'slot_id' must be an integer.", code="invalid_slot_id")

    def move():
        booking = slots_staff.move_booking(code, slot_id, _actor())
        answer = booking_json(booking, with_ticket=False)
        commit_and_deliver()
        return answer

    return jsonify(run_with_retry(move))

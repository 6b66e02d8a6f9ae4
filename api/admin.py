"""Admin API (``/api/v1``): the market operation actions operators script. Admin
bearer tokens only; staff and supervisor tokens get 403."""

from __future__ import annotations

from flask import g, jsonify, request

from accounts.auth import api_roles
from accounts.models import ADMIN
from api import bp
from api.responses import BookingOut, ClosedOut, SlotOut, booking_json, slot_json
from api.schemas import BookingMove, NewCapacity
from api.spec import validate
from common.audit import Actor
from common.db import run_with_retry
from slots import staff as slots_staff
from slots import stock as slots_stock


def _actor() -> Actor:
    return Actor.of(g.api_user, request.remote_addr)


@bp.patch("/slots/<int:slot_id>")
@api_roles(ADMIN)
@validate(404, 409, 413, 422, ok=SlotOut, auth=True, tags=("admin",))
def update_slot(slot_id: int, json: NewCapacity):
    """Change a slot's capacity: ``{capacity}`` -> 200 with the slot, 409
    ``capacity_below_booked`` (with ``booked``) when places are booked beyond it."""

    def change():
        slot = slots_staff.set_capacity(slot_id, json.capacity, _actor())
        sold_out = slots_stock.slot_sold_out(slot)
        answer = {**slot_json(slot, sold_out), "booked": slot.booked_count}
        return answer

    return jsonify(run_with_retry(change))


@bp.post("/slots/<int:slot_id>/close")
@api_roles(ADMIN)
@validate(404, 409, ok=ClosedOut, auth=True, tags=("admin",))
def close_slot(slot_id: int):
    """Close a slot -> 200 ``{slot_id, cancelled, waiting_cleared}``: its confirmed
    bookings are cancelled (one ``slot_closed`` notice each), its waiting list cleared.
    Closing a closed slot answers 200 with zeros."""

    def close():
        closed = slots_staff.close_slot(slot_id, _actor())
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
@validate(404, 409, 413, 422, ok=BookingOut, auth=True, tags=("admin",))
def move_booking(code: str, json: BookingMove):
    """Move a confirmed booking: ``{slot_id}`` -> 200 with the booking; 409
    ``slot_full``, ``booking_not_movable``, ``already_booked``, or ``sold_out`` when a
    move to another day finds that day's stock sold out (issue 15)."""

    def move():
        booking = slots_staff.move_booking(code, json.slot_id, _actor())
        answer = booking_json(booking, with_ticket=False)
        return answer

    return jsonify(run_with_retry(move))

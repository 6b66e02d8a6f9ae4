"""``/api/v1/.../waiting-list``: a resident waits for a place in a full slot."""

from __future__ import annotations

from flask import jsonify

from api import bp
from api.responses import WaitingOut, waiting_json
from api.schemas import NewWaitingEntry, PhoneBody, ResidentLookup
from api.spec import validate
from common.limits import (
    booking_ip_limit,
    booking_nik_limit,
    code_budget,
    lookup_ip_limit,
    nik_key,
    no_nik,
)
from extensions import limiter
from slots import waiting as slots_waiting


@bp.post("/slots/<int:slot_id>/waiting-list")
@limiter.limit(booking_ip_limit)
@limiter.limit(booking_nik_limit, key_func=nik_key, exempt_when=no_nik)
@validate(404, 409, 413, 422, 429, ok=WaitingOut, status=201, tags=("waiting list",))
def join_waiting_list(slot_id: int, json: NewWaitingEntry):
    """Join a full slot's waiting list: ``{name, nik, phone}`` -> 201 with the position."""
    entry = slots_waiting.join_waiting_list(
        slot_id,
        json.name,
        json.nik,
        json.phone,
        language=json.language,
        kk=json.kk or "",
    )
    return jsonify(waiting_json(entry)), 201


@bp.get("/waiting-list/<code>")
@limiter.limit(lookup_ip_limit)
@code_budget()
@validate(404, 422, 429, ok=WaitingOut, tags=("waiting list",))
def get_waiting_entry(code: str, query: ResidentLookup):
    """A waiting-list place by code and ``?phone=``: status, position, booking if promoted."""
    entry = slots_waiting.get_waiting_entry_for_resident(code, query.phone)
    return jsonify(waiting_json(entry))


@bp.post("/waiting-list/<code>/leave")
@limiter.limit(lookup_ip_limit)
@code_budget()
@validate(404, 409, 413, 422, 429, ok=WaitingOut, tags=("waiting list",))
def leave_waiting_list(code: str, json: PhoneBody):
    """Leave a waiting list: ``{phone}`` -> ``{status: "left"}``."""
    entry = slots_waiting.get_waiting_entry_for_resident(code, json.phone or "")
    slots_waiting.leave_waiting_list(entry)
    return jsonify(waiting_json(entry))

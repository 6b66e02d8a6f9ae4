"""``/api/v1/bookings``: a resident books a slot, looks the booking up, cancels it,
names or removes the proxy who collects it."""

from __future__ import annotations

from flask import jsonify, request

from api import bp
from api.responses import BookingOut, StatusOut, booking_json
from api.schemas import NewBooking, PhoneBody, ProxyBody, ProxyRemoval, ResidentLookup
from api.spec import validate
from common.db import run_with_retry
from common.limits import (
    booking_ip_limit,
    booking_nik_limit,
    code_budget,
    lookup_ip_limit,
    nik_key,
    no_nik,
)
from extensions import limiter
from slots import booking as slots_booking
from slots import codes as slots_codes
from slots import proxy as slots_proxy


@bp.post("/bookings")
@limiter.limit(booking_ip_limit)
@limiter.limit(booking_nik_limit, key_func=nik_key, exempt_when=no_nik)
@validate(404, 409, 413, 422, 429, ok=BookingOut, status=201, tags=("bookings",))
def create_booking(json: NewBooking):
    """Book a slot: ``{slot_id, name, nik, phone}`` -> 201 with the ticket.

    With an ``Idempotency-Key`` header, a repeat of the same request returns the
    first booking (header ``Idempotent-Replayed: true``) instead of booking again.
    Where the point-day has stock, the booking reserves ``packages`` of it; 409
    ``sold_out`` when the stock cannot cover one more booking (issue 15), ``slot_full``
    when the slot has no place left.
    """
    fields = (json.name, json.nik, json.phone)
    kk = json.kk or ""
    key = request.headers.get("Idempotency-Key")
    headers = {}
    if key is None:
        booking = slots_booking.place_booking(json.slot_id, *fields, language=json.language, kk=kk)
    else:
        request_fields = {"slot_id": json.slot_id, "name": fields[0], "nik": fields[1]}
        request_fields["phone"] = fields[2]
        for optional in ("language", "kk"):
            if optional in json.model_fields_set:  # sent, even as null
                request_fields[optional] = getattr(json, optional)
        fingerprint = slots_codes.request_fingerprint(request_fields)
        booking, replayed = slots_booking.book_slot_once(
            key, fingerprint, json.slot_id, *fields, language=json.language, kk=kk
        )
        headers["Idempotent-Replayed"] = "true" if replayed else "false"
    body = booking_json(booking)  # the request's one commit follows (run_view)
    return jsonify(body), 201, headers


@bp.get("/bookings/<code>")
@limiter.limit(lookup_ip_limit)
@code_budget()
@validate(404, 422, 429, ok=BookingOut, tags=("bookings",))
def get_booking(code: str, query: ResidentLookup):
    """Fetch a booking by code and ``?phone=``; one 404 for any mismatch."""
    booking = slots_booking.get_booking_for_resident(code, query.phone)
    return jsonify(booking_json(booking))


@bp.post("/bookings/<code>/cancel")
@limiter.limit(lookup_ip_limit)
@code_budget()
@validate(404, 409, 413, 422, 429, ok=StatusOut, tags=("bookings",))
def cancel_booking(code: str, json: PhoneBody):
    """Cancel a booking: ``{phone}`` -> ``{status: "cancelled"}``."""
    phone = json.phone or ""

    def cancel():
        booking = slots_booking.get_booking_for_resident(code, phone)
        slots_booking.cancel_booking(booking)
        return booking

    # Promotions lock several residents; a crossed pair may deadlock and retry.
    booking = run_with_retry(cancel)
    return jsonify({"code": booking.code, "status": booking.status})


@bp.post("/bookings/<code>/proxy")
@limiter.limit(lookup_ip_limit)
@code_budget()
@validate(404, 409, 413, 422, 429, ok=BookingOut, tags=("bookings",))
def set_booking_proxy(code: str, json: ProxyBody):
    """Name the person who collects the booking (issue 15 part 3): ``{phone,
    proxy_name, proxy_nik}`` -> the booking with ``proxy: {name, nik_last4}``; naming
    again replaces the proxy. 404 ``booking_not_found`` (code and phone do not match);
    409 ``proxy_not_allowed`` (not confirmed) or ``proxy_limit_reached`` (the person
    already collects for PROXY_LIMIT_PER_DAY bookings that day, at any point); 422
    ``invalid_name``, ``invalid_nik``, ``proxy_is_resident`` (the resident's own NIK)."""
    booking = slots_booking.get_booking_for_resident(code, json.phone or "")
    slots_proxy.set_proxy(booking, json.proxy_name, json.proxy_nik)
    return jsonify(booking_json(booking))


@bp.delete("/bookings/<code>/proxy")
@limiter.limit(lookup_ip_limit)
@code_budget()
@validate(404, 409, 413, 422, 429, ok=BookingOut, tags=("bookings",))
def remove_booking_proxy(code: str, json: ProxyRemoval, query: ResidentLookup):
    """Remove the booking's proxy: ``{phone}`` (or ``?phone=``) -> the booking with
    ``proxy: null`` (also when none was named). 404 ``booking_not_found``; 409
    ``proxy_not_allowed`` when the booking is not confirmed."""
    booking = slots_booking.get_booking_for_resident(code, json.phone or query.phone)
    slots_proxy.remove_proxy(booking)
    return jsonify(booking_json(booking))

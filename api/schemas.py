"""JSON shapes of the API. Instants are ISO 8601 with the market point's UTC offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for

from common.timeutil import zone
from qr.service import issue_ticket
from slots.booking import BookingSummary
from slots.codes import booking_access_key
from slots.models import Booking, MarketPoint, Slot, WaitingListEntry
from slots.waiting import waiting_position


def local_iso(instant: datetime, point: MarketPoint) -> str:
    """Return ``instant`` as ISO 8601 in the point's zone, e.g. 2026-12-01T08:00:00+07:00."""
    return instant.astimezone(zone(point.timezone)).isoformat()


def market_point_json(point: MarketPoint) -> dict[str, Any]:
    """Public fields of a market point."""
    return {
        "code": point.code,
        "name": point.name,
        "address": point.address,
        "kecamatan": point.kecamatan,
        "city": point.city,
        "latitude": point.latitude,
        "longitude": point.longitude,
        "safe_limit": point.safe_limit,
        "timezone": point.timezone,
    }


def slot_json(slot: Slot) -> dict[str, Any]:
    """A slot with its capacity and places left (counts)."""
    point = slot.market_point
    return {
        "id": slot.id,
        "starts_at": local_iso(slot.starts_at, point),
        "ends_at": local_iso(slot.ends_at, point),
        "capacity": slot.capacity,
        "remaining": slot.remaining,
    }


def booking_json(booking: Booking | BookingSummary, with_ticket: bool = True) -> dict[str, Any]:
    """A booking (the model, or the summary of one just made) as the resident
    (``with_ticket``) or the gate sees it; no full NIK."""
    slot = booking.slot
    body: dict[str, Any] = {
        "code": booking.code,
        "status": booking.status,
        "name": booking.name,
        "nik_last4": booking.nik_last4,
        "slot": {
            "id": slot.id,
            "starts_at": local_iso(slot.starts_at, slot.market_point),
            "ends_at": local_iso(slot.ends_at, slot.market_point),
        },
        "market_point": {
            "code": slot.market_point.code,
            "name": slot.market_point.name,
            "address": slot.market_point.address,
        },
    }
    if with_ticket:
        key = booking_access_key(booking.code)
        body["ticket"] = issue_ticket(booking)
        body["qr_png_url"] = url_for("qr.ticket_qr", code=booking.code, key=key, _external=True)
        body["ticket_url"] = url_for("qr.ticket", code=booking.code, key=key, _external=True)
        body["qr_svg_url"] = url_for("qr.ticket_qr_svg", code=booking.code, key=key, _external=True)
        body["pdf_url"] = url_for("qr.ticket_pdf", code=booking.code, key=key, _external=True)
        body["ics_url"] = url_for("qr.ticket_ics", code=booking.code, key=key, _external=True)
    return body


def waiting_json(entry: WaitingListEntry) -> dict[str, Any]:
    """A waiting-list place: code, status, position (1 = next; None when not waiting),
    the slot, and the booking with its ticket once promoted."""
    slot = entry.slot
    return {
        "code": entry.code,
        "status": entry.status,
        "position": waiting_position(entry),
        "slot": {
            "id": slot.id,
            "starts_at": local_iso(slot.starts_at, slot.market_point),
            "ends_at": local_iso(slot.ends_at, slot.market_point),
        },
        "market_point": {"code": slot.market_point.code, "name": slot.market_point.name},
        "booking": booking_json(entry.booking) if entry.booking is not None else None,
    }

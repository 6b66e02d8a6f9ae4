"""The API's shapes, declared once: the pydantic schemas spectree validates requests
with and publishes in ``GET /api/v1/openapi.json`` (see api/spec.py), and the
functions that build the response bodies. Instants are ISO 8601 with the market
point's UTC offset unless a schema says UTC.

A request schema's ``error_codes`` name the error code of each field's fault (the
codes clients know: ``invalid_slot_id``, ``invalid_nik``, ...); ``"*"`` is the code
of any other fault of that schema. Extra fields in a body are ignored, as they were.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from flask import url_for
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from checkin.service import MAX_SYNC_SCANS
from common.timeutil import parse_day, zone
from qr.service import issue_ticket
from slots.models import Booking, MarketPoint, Slot, WaitingListEntry
from slots.service import BookingSummary, booking_access_key, waiting_position

# Building blocks ------------------------------------------------------------------


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _day(value: str) -> date:
    try:
        return parse_day(value)
    except ValueError:
        raise ValueError("must be a date YYYY-MM-DD between 2000 and 2100") from None


NonBlank = Annotated[StrictStr, AfterValidator(_non_blank)]
Day = Annotated[str, AfterValidator(_day), Field(json_schema_extra={"format": "date"})]
# A client's scan nonce: what a UUID, a ULID or a counter with a prefix looks like.
Nonce = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
# What a gate scanned: a ticket token or a booking code (the view says which is used).
Scanned = Annotated[Any, WithJsonSchema({"type": "string"})]


class Request(BaseModel):
    """A request body or query; ``error_codes`` maps field -> error code (module doc)."""

    error_codes: ClassVar[dict[str, str]] = {}
    # True where the body may be left out (anything but a JSON object counts as {}).
    optional_body: ClassVar[bool] = False


# Requests ---------------------------------------------------------------------------


class PointSearch(Request):
    """``GET /market-points``: ``q`` filters by name, kecamatan or city."""

    q: str = ""


class DayQuery(Request):
    """A local calendar day, ``YYYY-MM-DD`` (default: today where the point is)."""

    error_codes: ClassVar[dict[str, str]] = {"date": "invalid_date"}
    date: Day | None = None


class ResidentLookup(Request):
    """A resident proves a booking or waiting place is theirs with its phone number."""

    phone: str = ""


class PhoneBody(Request):
    """``{phone}``: the phone number the booking or waiting place was made with."""

    error_codes: ClassVar[dict[str, str]] = {"phone": "invalid_phone"}
    phone: StrictStr | None = None


_RESIDENT_CODES = {
    name: f"invalid_{name}" for name in ("slot_id", "name", "nik", "phone", "language", "kk")
}


class NewBooking(Request):
    """``POST /bookings``: who books which slot. ``nik`` is the 16-digit NIK, ``kk`` the
    family card number where the point limits households, ``language`` of the
    resident's messages ``id`` (default) or ``en``; the services check their form."""

    error_codes: ClassVar[dict[str, str]] = _RESIDENT_CODES
    slot_id: StrictInt
    name: NonBlank
    nik: NonBlank
    phone: NonBlank
    language: StrictStr = "id"
    kk: StrictStr | None = None


class NewWaitingEntry(Request):
    """``POST /slots/{id}/waiting-list``: the same resident fields as a booking."""

    error_codes: ClassVar[dict[str, str]] = _RESIDENT_CODES
    name: NonBlank
    nik: NonBlank
    phone: NonBlank
    language: StrictStr = "id"
    kk: StrictStr | None = None


class GateQuery(Request):
    """The gate's market point (staff default to their own)."""

    market_point: str | None = None


class ExportQuery(DayQuery):
    """A day and, optionally, one market point."""

    market_point: str | None = None


class ScanBody(Request):
    """``POST /checkin`` and ``/checkout``: the scanned ``ticket`` or typed ``code``;
    ``market_point`` (supervisors name it; staff default to their own), optional
    ``device`` label and ``nonce`` (a resend of a nonce answers the first result)."""

    error_codes: ClassVar[dict[str, str]] = {
        "nonce": "invalid_nonce",
        "device": "invalid_device",
        "market_point": "invalid_market_point",
    }
    ticket: Scanned = None
    code: Scanned = None
    nonce: Nonce | None = None
    device: StrictStr | None = None
    market_point: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _something_scanned(cls, data: Any) -> Any:
        # First, as the gate always checked it: a scan with nothing scanned.
        scanned = data.get("ticket") if data.get("ticket") is not None else data.get("code")
        if not isinstance(scanned, str) or not scanned.strip():
            raise PydanticCustomError("invalid_scan", "Send 'ticket' or 'code'.")
        return data

    @property
    def scanned(self) -> str:
        """The scanned text: the ticket if sent, else the code."""
        return self.ticket if self.ticket is not None else self.code


class UndoBody(Request):
    """``POST /checkins/{code}/undo``: an optional ``device`` label; the body may be
    left out."""

    error_codes: ClassVar[dict[str, str]] = {"device": "invalid_device"}
    optional_body: ClassVar[bool] = True
    device: StrictStr | None = None


def _batch_size(items: Any) -> Any:
    if isinstance(items, list) and len(items) > MAX_SYNC_SCANS:
        raise PydanticCustomError(
            "batch_too_large", "Send at most {most} scans at once.", {"most": MAX_SYNC_SCANS}
        )
    return items


class OfflineScanItem(BaseModel):
    """One queued scan: its own ``nonce``, ``scanned_at`` (ISO 8601 with offset; an
    unusable one is rejected on its own), the ``ticket`` or ``code``, ``direction``,
    and what the device answered offline."""

    nonce: Nonce
    scanned_at: Annotated[Any, WithJsonSchema({"type": "string", "format": "date-time"})] = None
    ticket: Scanned = None
    code: Scanned = None
    direction: Literal["in", "out"] = "in"
    local_result: Literal["admitted", "refused", "wait", "checked_out"] = "admitted"
    # A falsy value counts as no reason, as the gate always read it.
    local_reason: Annotated[StrictStr | None, BeforeValidator(lambda v: v or None)] = None


class OfflineBatch(Request):
    """``POST /checkin/sync``: an offline gate's queued scans (at most 500)."""

    error_codes: ClassVar[dict[str, str]] = {
        "scans": "invalid_scans",
        "nonce": "invalid_nonce",
        "device": "invalid_device",
        "market_point": "invalid_market_point",
    }
    scans: Annotated[
        list[OfflineScanItem], BeforeValidator(_batch_size), Field(max_length=MAX_SYNC_SCANS)
    ]
    device: StrictStr | None = None
    market_point: StrictStr | None = None

    @model_validator(mode="after")
    def _own_nonces(self) -> OfflineBatch:
        seen: set[str] = set()
        for number, item in enumerate(self.scans):
            if item.nonce in seen:
                raise PydanticCustomError(
                    "invalid_nonce", "scans[{number}] needs its own 'nonce'.", {"number": number}
                )
            seen.add(item.nonce)
        return self


class NewCapacity(Request):
    """``PATCH /slots/{id}``: exactly ``{"capacity": n}``, n a whole number 0-10000."""

    model_config = ConfigDict(extra="forbid")
    error_codes: ClassVar[dict[str, str]] = {"*": "invalid_capacity"}
    capacity: StrictInt


class BookingMove(Request):
    """``POST /bookings/{code}/move``: the slot to move to."""

    error_codes: ClassVar[dict[str, str]] = {"slot_id": "invalid_slot_id"}
    slot_id: StrictInt


# Responses --------------------------------------------------------------------------


class ApiError(BaseModel):
    """Every error body: a stable ``error`` code, a plain ``message``, and ``fields``
    naming each faulty input field with its message (may be empty). Some codes add
    facts (``booked``, ``retry_after``, ...)."""

    error: str
    message: str
    fields: dict[str, str]


class MarketPointOut(BaseModel):
    """A market point's public fields; ``safe_limit`` is people inside at once."""

    code: str
    name: str
    address: str
    kecamatan: str
    city: str
    latitude: float | None
    longitude: float | None
    safe_limit: int
    timezone: str


class SlotOut(BaseModel):
    """A slot with its capacity and places left (counts); ``booked`` after a change."""

    id: int
    starts_at: str
    ends_at: str
    capacity: int
    remaining: int
    booked: int | None = None


class SlotRef(BaseModel):
    """Which slot: id and window."""

    id: int
    starts_at: str
    ends_at: str


class PointRef(BaseModel):
    """Which market point."""

    code: str
    name: str
    address: str | None = None


class BookingOut(BaseModel):
    """A booking; the resident's view adds the ticket and its links. No full NIK."""

    code: str
    status: str
    name: str
    nik_last4: str
    slot: SlotRef
    market_point: PointRef
    ticket: str | None = None
    qr_png_url: str | None = None
    ticket_url: str | None = None
    qr_svg_url: str | None = None
    pdf_url: str | None = None
    ics_url: str | None = None


class StatusOut(BaseModel):
    """A booking's code and new status."""

    code: str
    status: str


class WaitingOut(BaseModel):
    """A waiting-list place: ``position`` 1 is next (None when not waiting); the
    booking with its ticket once promoted."""

    code: str
    status: str
    position: int | None
    slot: SlotRef
    market_point: PointRef
    booking: BookingOut | None


class ScanOut(BaseModel):
    """What the gate shows: ``result`` admitted|wait|refused|checked_out|undone, the
    ``reason`` code of a refusal, facts behind it, and people inside now."""

    result: str
    reason: str | None
    message: str
    details: dict[str, Any]
    replayed: bool
    booking: BookingOut | None
    inside_now: int


class SyncedScan(BaseModel):
    """The answer to one queued scan (``rejected`` items carry only nonce and reason)."""

    nonce: str
    result: str
    reason: str | None = None
    message: str | None = None
    replayed: bool | None = None
    conflict: str | None = None


class SyncOut(BaseModel):
    """The answers to a batch, and people inside now."""

    results: list[SyncedScan]
    inside_now: int


class KeyOut(BaseModel):
    """A ticket verification key: raw Ed25519 key in unpadded base64url."""

    kid: str
    alg: str
    public_key: str
    created_at: str | None
    signing: bool


class KeysOut(BaseModel):
    """The published verification keys (docs/tickets.md)."""

    keys: list[KeyOut]


class GatePoint(BaseModel):
    """The gate's market point."""

    id: int
    code: str
    name: str
    timezone: str
    safe_limit: int


class GateBooking(BaseModel):
    """A booking as an offline gate knows it; instants ISO 8601 UTC."""

    id: int
    code: str
    status: str
    starts_at: str
    ends_at: str
    checked_in_at: str | None


class GateSnapshotOut(BaseModel):
    """What an offline gate needs: keys, rules (minutes), bookings, cancelled ids."""

    server_time: str
    market_point: GatePoint
    checkin_early_minutes: int
    checkin_late_minutes: int
    dwell_minutes: int
    inside_now: int
    keys: list[KeyOut]
    bookings: list[GateBooking]
    cancelled: list[int]


class OccupancyOut(BaseModel):
    """A point's counts now and today (people and bookings)."""

    market_point: PointRef
    inside_now: int
    safe_limit: int
    booked_today: int
    checked_in_today: int


class OverviewPoint(BaseModel):
    """The point of an overview row."""

    id: int
    code: str
    name: str
    city: str
    kecamatan: str


class OverviewSlot(BaseModel):
    """One of today's slots; instants ISO 8601 UTC, the rest counts."""

    id: int
    starts_at: str
    ends_at: str
    capacity: int
    booked: int
    checked_in: int
    no_show: int
    waiting: int
    remaining: int


class OverviewOut(BaseModel):
    """The supervisor's row of a point: inside now, gauge ``level`` ok|warn|full,
    today's counts, ``alerts`` and today's slots."""

    market_point: OverviewPoint
    inside_now: int
    safe_limit: int
    level: str
    booked_today: int
    checked_in_today: int
    no_show_today: int
    waiting_today: int
    refused_recent: int
    gate_conflicts: int
    alerts: list[str]
    slots: list[OverviewSlot]


class ClosedOut(BaseModel):
    """A closed slot: bookings cancelled and waiting places cleared (counts)."""

    slot_id: int
    cancelled: int
    waiting_cleared: int


# Builders of the response bodies ------------------------------------------------------


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

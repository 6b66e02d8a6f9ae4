"""The API's response bodies: their pydantic schemas (published in the OpenAPI
document, checked by the fuzz test) and the functions that build them. Instants are
ISO 8601 with the market point's UTC offset unless a schema says UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from common.links import public_url
from common.timeutil import zone
from qr.service import issue_ticket
from slots.booking import BookingSummary
from slots.codes import booking_access_key
from slots.models import Booking, MarketPoint, Slot, WaitingListEntry
from slots.proxy import proxy_summary
from slots.waiting import waiting_position

# Schemas ------------------------------------------------------------------------------


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
    # True when the slot's point-day stock cannot cover one more booking (issue 15).
    sold_out: bool = False
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


class ProxyOut(BaseModel):
    """The person named to collect a booking (issue 15 part 3): their name and the last
    four digits of their NIK, to check against their KTP at the gate."""

    name: str
    nik_last4: str


class BookingOut(BaseModel):
    """A booking; the resident's view adds the ticket and its links. No full NIK.
    ``proxy`` is the person named to collect it, or null."""

    code: str
    status: str
    name: str
    nik_last4: str
    # Packages of its point-day's stock the booking reserved (issue 15; 0: no stock set).
    packages: int = 0
    slot: SlotRef
    # When the resident is told to come: the start of its arrival wave, ISO UTC
    # (issue 15); the slot's start with waves off.
    arrive_at: datetime
    market_point: PointRef
    proxy: ProxyOut | None
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


class HandoutOut(BaseModel):
    """The packages the gate hands over on an admission (issue 15; a count)."""

    packages: int


class StockLevelOut(BaseModel):
    """A point-day's stock (issue 15), counts of packages: on hand, ``reserved`` by
    active bookings (handed out ones included), ``handed_out`` at the gate, ``left``
    (packages - reserved)."""

    packages: int
    reserved: int
    handed_out: int
    left: int


class ScanOut(BaseModel):
    """What the gate shows: ``result`` admitted|wait|refused|checked_out|undone, the
    ``reason`` code of a refusal, facts behind it (``too_early``: ``arrive_at``, the
    booking's arrival time, and ``opens_at``, ISO UTC), people inside now, and
    ``handout``: the packages to hand over on an admission (null when none; issue 15)."""

    result: str
    reason: str | None
    message: str
    details: dict[str, Any]
    replayed: bool
    booking: BookingOut | None
    inside_now: int
    handout: HandoutOut | None
    # On an admission of a booking with a proxy: who collects (check their KTP).
    proxy: ProxyOut | None


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

    kid: int
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
    """A booking as an offline gate knows it; instants ISO 8601 UTC; ``packages`` to
    hand over on its admission (issue 15; 0 when none); ``proxy`` the person named to
    collect it (the offline gate shows them to check their KTP)."""

    id: int
    code: str
    status: str
    starts_at: str
    ends_at: str
    checked_in_at: str | None
    packages: int = 0
    proxy: ProxyOut | None


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
    """A point's counts now and today (people and bookings), and today's ``stock``
    (null when none is set; issue 15)."""

    market_point: PointRef
    inside_now: int
    safe_limit: int
    booked_today: int
    checked_in_today: int
    stock: StockLevelOut | None


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
    today's counts, ``alerts`` (``nearly_sold_out`` from 90% of today's stock
    reserved), today's ``stock`` (null when none is set; issue 15) and today's slots."""

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
    stock: StockLevelOut | None
    slots: list[OverviewSlot]


class StockOut(BaseModel):
    """A market point's stock on one local date (counts of packages): ``reserved`` by
    active bookings (handed-out ones included), ``handed_out`` at the gate, ``left`` =
    ``packages - reserved``."""

    market_point: str
    date: str
    packages: int
    per_booking: int
    reserved: int
    handed_out: int
    left: int


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


def slot_json(slot: Slot, sold_out: bool = False) -> dict[str, Any]:
    """A slot with its capacity and places left (counts), and ``sold_out``: its
    point-day's stock cannot cover one more booking (``slots.stock.sold_out_days``)."""
    point = slot.market_point
    return {
        "id": slot.id,
        "starts_at": local_iso(slot.starts_at, point),
        "ends_at": local_iso(slot.ends_at, point),
        "capacity": slot.capacity,
        "remaining": slot.remaining,
        "sold_out": sold_out,
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
        "packages": booking.packages,
        "slot": {
            "id": slot.id,
            "starts_at": local_iso(slot.starts_at, slot.market_point),
            "ends_at": local_iso(slot.ends_at, slot.market_point),
        },
        # When the resident is told to come: its arrival wave's start (issue 15).
        "arrive_at": booking.arrive_at.isoformat(),
        "market_point": {
            "code": slot.market_point.code,
            "name": slot.market_point.name,
            "address": slot.market_point.address,
        },
        # A booking just made has no proxy yet: no query on the booking rush.
        "proxy": None if isinstance(booking, BookingSummary) else proxy_summary(booking.id),
    }
    if with_ticket:
        key = booking_access_key(booking.code)
        body["ticket"] = issue_ticket(booking)
        # Links residents keep: on PUBLIC_BASE_URL, never the request's Host (issue 14).
        for field, endpoint in (
            ("qr_png_url", "qr.ticket_qr"),
            ("ticket_url", "qr.ticket"),
            ("qr_svg_url", "qr.ticket_qr_svg"),
            ("pdf_url", "qr.ticket_pdf"),
            ("ics_url", "qr.ticket_ics"),
        ):
            body[field] = public_url(endpoint, code=booking.code, key=key)
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


class SmsAnswerOut(BaseModel):
    """What became of an inbound SMS (issue 17 §2): ``status`` ``queued`` (answered:
    ``replies`` are the texts written to the outbox, sent through the SMS gateway) or
    ``duplicate`` (this ``id`` was taken in before: nothing new)."""

    id: str
    status: str
    replies: list[str]


class WebhookAnswerOut(BaseModel):
    """A WhatsApp webhook taken in: how many new messages went to the job."""

    received: int

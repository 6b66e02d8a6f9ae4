"""The text of each message to a resident, in their language, and the channel message."""

from __future__ import annotations

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select

from common.links import public_url
from common.timeutil import zone
from extensions import db
from notify.channels import Message
from slots.codes import booking_access_key
from slots.models import Booking, BookingProxy, Notice


def _ticket_link(booking: Booking) -> str:
    """The public URL of ``booking``'s ticket page (its capability key included), on
    PUBLIC_BASE_URL whichever host name the request that caused the message used."""
    return public_url("qr.ticket", code=booking.code, key=booking_access_key(booking.code))


def _proxy_values(booking: Booking) -> dict[str, str]:
    """The proxy a ``proxy_set`` or ``proxy_removed`` message names: the booking's proxy
    row as it is now (a removed one keeps its row: ``BookingProxy.removed_at``)."""
    proxy = db.session.scalar(select(BookingProxy).where(BookingProxy.booking_id == booking.id))
    if proxy is None:  # purged with the booking; its notices are void by then
        return {"proxy": "?", "proxy_nik": "????"}
    return {"proxy": proxy.name, "proxy_nik": proxy.nik_last4}


def render_notice(notice: Notice) -> str:
    """Return the text of ``notice`` in the booking's language ("id" or "en").

    Every kind carries the ticket link (a cancelled ticket's page says so); times are
    the market point's local time with its zone abbreviation (e.g. WIB). Every kind
    that asks the resident to come tells the arrival time, the start of the booking's
    arrival wave (``booking.arrive_at``; issue 15): "datang pukul 07:10".
    """
    booking = notice.booking
    point = booking.slot.market_point
    start = booking.slot.starts_at.astimezone(zone(point.timezone))
    arrive = booking.arrive_at.astimezone(zone(point.timezone))
    values = {
        "code": booking.code,
        "point": point.name,
        "when": f"{start:%d-%m-%Y %H:%M} {start:%Z}",
        "arrive": f"{arrive:%H:%M}",
        "link": _ticket_link(booking),
    }
    if notice.kind in ("proxy_set", "proxy_removed"):
        values.update(_proxy_values(booking))
    with force_locale(booking.language or "id"):
        texts = {
            "confirmation": _(
                "Antri: booking %(code)s at %(point)s on %(when)s is confirmed; "
                "arrive at %(arrive)s. Ticket: %(link)s"
            ),
            "reminder": _(
                "Antri: reminder, your slot at %(point)s starts %(when)s; arrive at %(arrive)s. "
                "Show your ticket at the gate: %(link)s"
            ),
            "cancellation": _(
                "Antri: booking %(code)s at %(point)s on %(when)s is cancelled. Details: %(link)s"
            ),
            "promotion": _(
                "Antri: a place freed up. You have a booking %(code)s at %(point)s "
                "on %(when)s; arrive at %(arrive)s. Ticket: %(link)s"
            ),
            "slot_closed": _(
                "Antri: the market closed the slot of %(when)s at %(point)s. "
                "Booking %(code)s is cancelled; please book another slot. Details: %(link)s"
            ),
            "slot_moved": _(
                "Antri: the market moved booking %(code)s at %(point)s to %(when)s; "
                "arrive at %(arrive)s. Ticket: %(link)s"
            ),
            "proxy_set": _(
                "Antri: %(proxy)s (NIK ****%(proxy_nik)s) may now collect booking %(code)s "
                "at %(point)s on %(when)s for you, showing their KTP at the gate. "
                "Not you? Remove them: %(link)s"
            ),
            "proxy_removed": _(
                "Antri: %(proxy)s (NIK ****%(proxy_nik)s) no longer collects booking "
                "%(code)s at %(point)s on %(when)s. Ticket: %(link)s"
            ),
        }
        return texts[notice.kind] % values


def message_for(notice: Notice) -> Message:
    """Return the channel message of ``notice``; its id is stable across attempts.
    A direct notice (no booking) carries its own recipient, language and text; its
    message names no booking (``booking`` is "")."""
    booking = notice.booking
    if booking is None:
        return Message(
            id=f"antri-notice-{notice.id}",
            kind=notice.kind,
            booking="",
            to=notice.to_phone or "",
            language=notice.language or "id",
            text=notice.body or "",
        )
    return Message(
        id=f"antri-notice-{notice.id}",
        kind=notice.kind,
        booking=booking.code,
        to=booking.phone,
        language=booking.language or "id",
        text=render_notice(notice),
    )

"""Tickets for bookings: issue a signed token, verify one, find the keyring."""

from __future__ import annotations

from flask import current_app

from qr.keys import Keyring, load_keyring
from qr.tokens import TicketClaims, make_token, verify_token
from slots.models import Booking


def keyring() -> Keyring:
    """Return the app's ticket keyring, loading it once per process from TICKET_KEY_DIR."""
    ring = current_app.extensions.get("antri_keyring")
    if ring is None:
        ring = load_keyring(current_app.config["TICKET_KEY_DIR"])
        current_app.extensions["antri_keyring"] = ring
    return ring


def issue_ticket(booking: Booking) -> str:
    """Return the signed ticket token (the exact QR payload) of a flushed booking.

    The token is derived, not stored: the same booking and key always give a token
    that verifies, and a rotated key issues new tokens while old ones still verify.
    """
    ring = keyring()
    claims = TicketClaims(
        kid=ring.signing_kid,
        booking_id=booking.id,
        market_point_id=booking.slot.market_point_id,
        slot_starts_at=booking.slot.starts_at,
        slot_ends_at=booking.slot.ends_at,
    )
    return make_token(claims, ring.signing_key)


def verify_ticket(token: str) -> TicketClaims:
    """Verify a scanned token against every published key.

    Raises: InvalidFormat, UnknownKey or InvalidSignature (see qr.tokens.verify_token).
    """
    return verify_token(token, keyring().public_keys)

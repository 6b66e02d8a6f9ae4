"""Tickets for bookings: issue a signed token, verify one, find the keyring."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from flask import current_app

from qr.errors import KeysUnavailable
from qr.keys import Keyring, load_keyring
from qr.tokens import TicketClaims, make_token, verify_token
from slots.models import Booking

if TYPE_CHECKING:
    from slots.booking import BookingSummary

log = logging.getLogger("antri.tickets")


def keyring() -> Keyring:
    """Return the app's ticket keyring from TICKET_KEY_DIR.

    It is cached per process and reloaded when the folder changes (a rotation or a
    retirement by ``flask tickets``), checked with one stat per call.
    """
    directory = Path(current_app.config["TICKET_KEY_DIR"])
    stamp = _folder_stamp(directory)  # read before loading: a change after it reloads
    cached = current_app.extensions.get("antri_keyring")
    if cached is None or cached[0] != stamp:
        env_pem = current_app.config.get("TICKET_PRIVATE_KEY")
        env_key = (current_app.config["TICKET_KEY_ID"], env_pem) if env_pem else None
        try:
            ring = load_keyring(directory, env_key)
        except (ValueError, TypeError, OSError) as exc:
            # A damaged key must stop ticket work loudly, never sign with another key.
            log.error("ticket keys unavailable: %s", exc)
            raise KeysUnavailable() from None
        current_app.extensions["antri_keyring"] = (stamp, ring)
        return ring
    return cached[1]


def _folder_stamp(directory: Path) -> tuple | None:
    """The key folder's state: its file names and mtime (None when it does not exist).
    Names too, because two changes within one mtime tick leave the mtime unchanged."""
    try:
        return (directory.stat().st_mtime_ns, tuple(sorted(os.listdir(directory))))
    except FileNotFoundError:
        return None


def public_keys_json() -> list[dict]:
    """The published verification keys: ``[{kid, alg, public_key, created_at,
    signing}]`` with the raw 32-byte Ed25519 key in unpadded base64url."""
    ring = keyring()
    keys = []
    for kid, key in sorted(ring.public_keys.items()):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        created = ring.created_at.get(kid)
        keys.append(
            {
                "kid": kid,
                "alg": "Ed25519",
                "public_key": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
                "created_at": created.isoformat() if created else None,
                "signing": kid == ring.signing_kid,
            }
        )
    return keys


def issue_ticket(booking: Booking | BookingSummary) -> str:
    """Return the signed ticket token (the exact QR payload) of a flushed booking (the
    model, or ``slots.service.BookingSummary``).

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

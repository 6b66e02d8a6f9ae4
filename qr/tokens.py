"""Ticket tokens: build the payload, sign it, encode it; and the one verifier.

Format version 1 (the full description, for other verifiers, is docs/tickets.md):

    body  = version:u8 (=1) | kid:u16 | booking_id:u32 | market_point_id:u16
            | slot_start:u32 (minutes since 1970-01-01T00:00Z) | slot_minutes:u16
    sig   = Ed25519(private key kid, b"ANTRI-TICKET" + body)      (64 bytes)
    token = Base45(body + sig)   (RFC 9285; 79 bytes -> 119 characters)

All integers are big-endian. Base45's alphabet is exactly QR's alphanumeric set, so a
token fits a version 5 QR code at error correction M. No personal data is inside.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta

import base45
from cryptography.exceptions import InvalidSignature as _BadSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from common.timeutil import UTC
from qr.errors import InvalidFormat, InvalidSignature, UnknownKey

VERSION = 1
_BODY = struct.Struct(">BHIHIH")
_SIG_LEN = 64
_CONTEXT = b"ANTRI-TICKET"
TOKEN_LENGTH = 119  # characters of a version 1 token
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TicketClaims:
    """What a ticket states: key id, booking id, market point id, slot window (UTC)."""

    kid: int
    booking_id: int
    market_point_id: int
    slot_starts_at: datetime
    slot_ends_at: datetime


def build_payload(claims: TicketClaims) -> bytes:
    """Pack claims into the 15-byte version 1 body.

    Raises: ValueError when a field is out of its range (ids, minutes), or the slot
      window does not start and end on whole minutes.
    """
    start_min, start_rem = divmod(int((claims.slot_starts_at - _EPOCH).total_seconds()), 60)
    length = claims.slot_ends_at - claims.slot_starts_at
    if start_rem or length.total_seconds() % 60:
        raise ValueError("slot window must be whole minutes")
    try:
        return _BODY.pack(
            VERSION,
            claims.kid,
            claims.booking_id,
            claims.market_point_id,
            start_min,
            int(length.total_seconds() // 60),
        )
    except struct.error as exc:
        raise ValueError(f"ticket field out of range: {exc}") from None


def sign_payload(body: bytes, key: Ed25519PrivateKey) -> bytes:
    """Return ``body`` followed by its 64-byte Ed25519 signature."""
    return body + key.sign(_CONTEXT + body)


def encode_token(signed: bytes) -> str:
    """Return the Base45 text of a signed body (QR-alphanumeric characters only)."""
    return base45.b45encode(signed).decode("ascii")


def make_token(claims: TicketClaims, key: Ed25519PrivateKey) -> str:
    """Build, sign and encode a ticket token for ``claims`` (119 characters)."""
    return encode_token(sign_payload(build_payload(claims), key))


def verify_token(token: str, public_keys: dict[int, Ed25519PublicKey]) -> TicketClaims:
    """Verify a token and return its claims.

    Args: token as scanned (leading/trailing CR, LF and tabs are ignored; spaces are
      part of Base45 and kept); public_keys by key id.
    Returns: TicketClaims.
    Raises: InvalidFormat (not Base45, wrong length or version), UnknownKey,
      InvalidSignature.
    """
    text = (token or "").strip("\r\n\t")
    if len(text) != TOKEN_LENGTH or not text.isascii():  # ASCII: "ı".upper() is "I"
        raise InvalidFormat()
    try:
        raw = base45.b45decode(text.upper())
    except (ValueError, TypeError):
        raise InvalidFormat() from None
    if len(raw) != _BODY.size + _SIG_LEN or raw[0] != VERSION:
        raise InvalidFormat()
    body, sig = raw[: _BODY.size], raw[_BODY.size :]
    _version, kid, booking_id, point_id, start_min, minutes = _BODY.unpack(body)
    key = public_keys.get(kid)
    if key is None:
        raise UnknownKey()
    try:
        key.verify(sig, _CONTEXT + body)
    except _BadSignature:
        raise InvalidSignature() from None
    starts = _EPOCH + timedelta(minutes=start_min)
    return TicketClaims(
        kid=kid,
        booking_id=booking_id,
        market_point_id=point_id,
        slot_starts_at=starts,
        slot_ends_at=starts + timedelta(minutes=minutes),
    )

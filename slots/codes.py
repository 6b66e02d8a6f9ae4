"""Booking codes, the access keys of capability URLs, and request fingerprints.

Everything here is a keyed hash or a random code: what a resident is given to come
back to their ticket or waiting-list entry, and what tells a replayed request from
another one under the same Idempotency-Key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets

from flask import current_app

from common.errors import DomainError
from slots.errors import InvalidPhone
from slots.identity import normalise_phone

# Booking codes avoid look-alikes (0/O, 1/I/L, 2/Z, 5/S, 8/B) so they can be read
# aloud and typed at the gate; every character is also QR-alphanumeric.
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"

CODE_LENGTH = 8  # 25**8 ~ 1.5e11 codes: unguessable behind a phone check and rate limits

_CODE_RE = re.compile(rf"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")


def new_booking_code() -> str:
    """Return a fresh random booking code of CODE_LENGTH characters (secrets-grade)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str | None:
    """Return the canonical booking code typed as ``raw`` or None if it cannot be one.

    Case, spaces and dashes are ignored (``abcd-efgh`` is ``ABCDEFGH``).
    """
    code = re.sub(r"[\s\-]", "", raw or "").upper()
    return code if _CODE_RE.fullmatch(code) else None


def booking_access_key(code: str) -> str:
    """Return the key (20 hex chars) in a ticket's capability URL.

    HMAC-SHA256 of the booking code under SECRET_KEY: only someone given the URL, or
    who proved the phone number at look-up, can open the ticket page and QR image.
    """
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, b"ticket:" + code.encode(), hashlib.sha256).hexdigest()[:20]


def waiting_access_key(code: str) -> str:
    """Return the key (20 hex chars) in a waiting-list page's capability URL."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, b"waiting:" + code.encode(), hashlib.sha256).hexdigest()[:20]


def check_waiting_access_key(code: str, key: str) -> bool:
    """True when ``key`` is the access key of waiting-list entry ``code``."""
    return hmac.compare_digest(waiting_access_key(code).encode(), (key or "").encode())


def check_access_key(code: str, key: str) -> bool:
    """True when ``key`` is the access key of booking ``code`` (constant-time)."""
    return hmac.compare_digest(booking_access_key(code).encode(), (key or "").encode())


def match_phone(found, phone: str, error: type[DomainError]):
    """Return ``found`` when it exists and was made with ``phone``; else raise ``error``
    (one answer for an unknown code, a malformed phone and a wrong phone, so the
    answer does not reveal which codes exist)."""
    try:
        e164 = normalise_phone(phone)
    except InvalidPhone:  # a malformed phone is just another non-match here
        e164 = None
    if (
        found is None
        or e164 is None
        or not hmac.compare_digest(found.phone.encode(), e164.encode())
    ):
        raise error()
    return found


def request_fingerprint(fields: dict[str, object]) -> str:
    """Return an HMAC-SHA256 (hex, keyed with NIK_HASH_KEY) of a request's fields as
    canonical JSON, to tell a replay of an Idempotency-Key from another request under
    the same key. Keyed, because the fields hold a NIK: a plain hash of them could be
    reversed by trying every NIK."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    key = current_app.config["NIK_HASH_KEY"].encode()
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()

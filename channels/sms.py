"""SMS through a gateway (issue 17 §2): ``POST /api/v1/channels/sms`` signed with
SMS_INBOUND_SECRET; replies go out through the outbox's default channel (the SMS
gateway's webhook, NOTIFY_CHANNEL)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime

from channels.chat import answer_message
from channels.inbound import claim
from channels.models import SMS
from slots.identity import normalise_phone

SIGNATURE_HEADER = "X-Antri-Signature"
TEXT_KEPT = 1000  # characters of a message read (as WhatsApp's): keywords fit well within


def signature_ok(raw_body: bytes, header: str | None, secret: str) -> bool:
    """True when ``header`` is ``sha256=<hex HMAC-SHA256 of raw_body with secret>``
    (constant-time compare; any other form is False)."""
    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256=") :].strip().lower())


@dataclass(frozen=True)
class SmsAnswer:
    """What became of an inbound SMS: ``status`` "queued" (answered; ``replies`` the
    texts written to the outbox) or "duplicate" (this id was taken in before)."""

    status: str
    replies: list[str] = field(default_factory=list)


def take_sms(message_id: str, sender: str, text: str, now: datetime) -> SmsAnswer:
    """Take in SMS ``message_id`` from ``sender`` (any common form of an Indonesian
    mobile number; it becomes the booking's phone) and answer it, once.

    Args: text, the message (its first TEXT_KEPT characters are read); now, aware UTC
      (the gateway's ``at`` is kept for nothing: the clock decides what is bookable).
    Returns: SmsAnswer. Raises: InvalidPhone (422) for a sender Antri cannot book for
      (nothing written); the database's OperationalError (busy: nothing written, the
      gateway's resend is taken in then).
    """
    phone = normalise_phone(sender)
    if claim(SMS, message_id, phone, now) is None:
        return SmsAnswer("duplicate")
    return SmsAnswer("queued", answer_message(SMS, message_id, phone, text[:TEXT_KEPT], now))

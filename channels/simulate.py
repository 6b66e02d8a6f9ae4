"""Playing a conversation without a gateway (issue 17 §5): ``flask channels simulate``
and the staff page call this, which takes the message in exactly as the gateway's
webhook would (same claim, conversation, services and outbox), minus the signature.
Bookings made so are real bookings."""

from __future__ import annotations

import secrets
from datetime import datetime

from channels.inbound import claim
from channels.models import SMS, USSD, WHATSAPP
from channels.sms import take_sms
from channels.ussd import answer_ussd
from channels.whatsapp import handle_stored
from common.errors import ValidationError
from slots.identity import normalise_phone

SIMULATED = (SMS, USSD, WHATSAPP)


def simulate(channel: str, phone: str, text: str, now: datetime, session: str = "") -> list[str]:
    """Send ``text`` from ``phone`` on ``channel`` ("sms", "ussd", "whatsapp").

    For USSD, ``text`` is the session's choices so far joined by ``*`` and
    ``session`` its id (a new one is made when empty: the choices are walked from the
    menu). Returns: what the resident reads: the USSD screen (``CON``/``END``), or the
    replies written to the outbox. Raises: InvalidPhone for a number Antri cannot
    book for; ValidationError ``invalid_channel``.
    """
    message_id = "sim-" + secrets.token_hex(8)
    if channel == SMS:
        return take_sms(message_id, phone, text, now).replies
    if channel == USSD:
        return [answer_ussd(session or message_id, phone, text, now)]
    if channel == WHATSAPP:
        row_id = claim(WHATSAPP, message_id, normalise_phone(phone), now, body=text)
        return handle_stored(row_id, now)
    raise ValidationError("Choose sms, ussd or whatsapp.", code="invalid_channel")

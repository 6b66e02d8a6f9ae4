"""USSD (issue 17 §3): ``POST /api/v1/channels/ussd`` with the form fields USSD
gateways post (``sessionId``, ``serviceCode``, ``phoneNumber``, ``text``: every choice
of the session so far joined by ``*``) answers ``CON <screen>`` (continue) or
``END <screen>`` (close), each screen at most 182 GSM 7-bit characters.

The walk is the conversation's menu (``channels.conversation``), kept in the database
per phone: a hop may reach any app host. A gateway that asks again for the same hop
(same session, same choices) gets the same screen and nothing is done twice, so a
resent confirmation books once; one whose choices no longer extend the last hop's
(the gateway went back) has them walked again from the menu. A new session starts at
the menu; choices it already carries (``*123*1#`` dialled) are walked in order.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from flask import current_app

from channels import replies
from channels.conversation import Turn, advance, keep, open_conversation, start, state_of
from channels.gsm7 import USSD_SCREEN_MAX, to_gsm7
from channels.inbound import ALLOWED, throttle
from channels.models import USSD
from common.errors import ValidationError
from slots.identity import normalise_phone

MAX_CHOICES = 40  # choices one session may carry (a booking walk takes 8)


def answer_ussd(session_id: str, phone_number: str, text: str, now: datetime) -> str:
    """Answer one USSD hop: ``CON ...`` or ``END ...``.

    Args: session_id, the gateway's session; phone_number, the subscriber (becomes the
      booking's phone); text, the choices so far joined by ``*`` ("" on the first hop);
      now, aware UTC.
    Returns: the answer body, at most 4 + 182 characters, GSM 7-bit.
    Raises: only the database's OperationalError (busy: the view answers 503).
    """
    try:
        phone = normalise_phone(phone_number)
    except ValidationError:
        with replies.speaking("id"):
            return _answer(replies.bad_phone(), end=True)
    conversation = open_conversation(USSD, phone, now)
    with replies.speaking(conversation.language):
        if throttle(USSD, phone) != ALLOWED:
            return _answer(replies.rate_limited(), end=True)
        state = state_of(conversation)
        session = state.data.pop("_session", None)
        hops = int(state.data.pop("_hops", 0))
        last = state.data.pop("_screen", None)
        seen = state.data.pop("_text", None)
        choices = text.split("*") if text else []
        if len(choices) > MAX_CHOICES:
            return _answer(replies.menu(), end=True)
        if session == session_id and _digest(text) == seen and last is not None:
            return last  # the gateway asks again for the same hop
        if session != session_id or not (
            hops <= len(choices) and _digest("*".join(choices[:hops])) == seen
        ):
            # A new session, or one whose choices no longer extend the last hop's (the
            # gateway went back): the choices walked again from the menu.
            screen, state = start()
            hops = 0
        else:
            screen = None
        turn = Turn(USSD, phone, now, conversation.language)
        for entry in choices[hops:]:
            screen, state = advance(state, entry, turn)
            if screen.end:
                break
        if screen is None:  # same session, fewer choices than seen: show the menu again
            screen, state = start()
        body = _answer(screen.text, screen.end)
        state.data.update(
            {
                "_session": session_id,
                "_hops": len(choices),
                "_screen": body,
                "_text": _digest(text),
            }
        )
        keep(conversation, state, now)
        return body


def _digest(text: str) -> str:
    """A hop's choices as kept between hops: a keyed digest (they may hold a NIK, which
    never stays in clear), enough to tell a resent hop and a gateway that went back."""
    key = current_app.config["NIK_HASH_KEY"].encode()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


def _answer(text: str, end: bool) -> str:
    """``CON``/``END`` and the screen, made GSM 7-bit and cut to 182 characters."""
    return ("END " if end else "CON ") + to_gsm7(text)[:USSD_SCREEN_MAX]

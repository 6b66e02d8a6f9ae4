"""One text message on SMS or WhatsApp, answered (issue 17 §2, §4): a language switch
(``EN``/``ID``), a keyword (``channels.keywords``), or on WhatsApp a step of the
numbered menu (``channels.conversation``). Anything else gets the keyword help (SMS)
or the menu (WhatsApp), never an error text.
"""

from __future__ import annotations

from datetime import datetime

from channels import keywords, replies
from channels.conversation import MENU, Turn, advance, keep, open_conversation, state_of
from channels.inbound import ALLOWED, TELL, send_replies, throttle
from channels.models import WHATSAPP

MENU_WORDS = {"MENU", "0", "HI", "HALO", "HALLO", "HELLO", "START", "MULAI"}


def answer_message(
    channel: str, message_id: str, phone: str, text: str, now: datetime
) -> list[str]:
    """Answer message ``message_id`` (already claimed) from ``phone`` (E.164) on
    ``channel`` ("sms" or "whatsapp"): the conversation's lock taken, the answer
    worked out through the booking services, the replies written to the outbox.

    Returns: the reply texts written (empty when the phone is over its rate limit and
      was told so already). Raises: only the database's OperationalError (busy).
    """
    conversation = open_conversation(channel, phone, now)
    verdict = throttle(channel, phone)
    if verdict != ALLOWED:
        with replies.speaking(conversation.language):
            texts = [replies.rate_limited()] if verdict == TELL else []
        send_replies(channel, message_id, phone, texts, conversation.language, now)
        return texts
    command = keywords.parse(text)
    if command.language:
        conversation.language = command.language
    turn = Turn(channel, phone, now, conversation.language)
    state = state_of(conversation)
    with replies.speaking(turn.language):
        if command.keyword:
            texts = [keywords.respond(command, turn)]
            state.step, state.data = MENU, {}  # a keyword leaves any menu walk
        elif command.language and not command.rest:
            texts = [replies.language_set() if turn.language == "en" else replies.help_text()]
        elif channel == WHATSAPP:
            entry = command.rest
            if entry.upper() in MENU_WORDS or state.step == MENU and not entry.isdigit():
                texts, state.step, state.data = [replies.whatsapp_menu()], MENU, {}
            else:
                screen, state = advance(state, entry, turn)
                texts = [screen.text]
        else:
            texts = [replies.help_text()]
    keep(conversation, state, now)
    send_replies(channel, message_id, phone, texts, turn.language, now)
    return texts

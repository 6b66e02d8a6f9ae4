"""Taking an inbound message in: its claim by the gateway's id, the per-phone rate
limit, and the replies written to the outbox (issue 17 §2, §4, §5).

A message is claimed by inserting its (channel, id) under a UNIQUE constraint in the
transaction that handles it: a resend, even one racing on another host, waits for that
transaction and then finds the row, and does nothing. Replies go to the outbox
(``notify.outbox.queue_message``) with the ref ``<channel>:<message id>:<n>``, so
they too are written once and delivered exactly once by the relay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from limits import parse_many
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from channels.models import WHATSAPP, InboundMessage
from extensions import db, limiter
from notify.outbox import queue_message

log = logging.getLogger("antri.channels")

REPLY_KIND = "reply"  # Notice.kind of a reply to a resident's message
# Channel of the outbox that carries each phone channel's replies ("" = NOTIFY_CHANNEL,
# the SMS gateway; USSD answers in its own HTTP response and writes none).
REPLY_VIA = {"sms": "", WHATSAPP: "whatsapp"}


def claim(
    channel: str, message_id: str, phone: str, now: datetime, body: str | None = None
) -> int | None:
    """Record inbound message ``message_id`` of ``channel`` from ``phone`` (E.164).

    Args: body, the text to keep until a job handles it (WhatsApp), else None;
      now, aware UTC.
    Returns: the new row's id, or None when this id was taken in before (a resend:
      nothing more is to be done). A concurrent claim of the same id waits for this
      transaction (the UNIQUE index), then gets None.
    """
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    handled = None if body is not None else now
    return db.session.execute(
        insert(InboundMessage)
        .values(
            channel=channel,
            message_id=message_id,
            phone=phone,
            body=body,
            received_at=now,
            handled_at=handled,
        )
        .on_conflict_do_nothing(index_elements=[InboundMessage.channel, InboundMessage.message_id])
        .returning(InboundMessage.id)
    ).scalar_one_or_none()


@dataclass(frozen=True)
class Taken:
    """A stored inbound message taken for handling: its id, sender and text."""

    message_id: str
    phone: str
    body: str


def take_for_handling(row_id: int, now: datetime) -> Taken | None:
    """Mark stored message ``row_id`` handled, its text emptied (a NIK does not stay in
    the database), and return what it said; None when it was handled already (a job
    run twice) or is unknown. One conditional update: of two runs at once, one gets
    it (the other waits for its row lock, then finds it handled)."""
    row = db.session.execute(
        select(InboundMessage.message_id, InboundMessage.phone, InboundMessage.body).where(
            InboundMessage.id == row_id, InboundMessage.handled_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    taken = db.session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == row_id, InboundMessage.handled_at.is_(None))
        .values(handled_at=now, body="")
        .execution_options(synchronize_session=False)
    ).rowcount
    return Taken(row.message_id, row.phone, row.body or "") if taken == 1 else None


def send_replies(
    channel: str, message_id: str, phone: str, texts: list[str], language: str, now: datetime
) -> None:
    """Write the replies ``texts`` to ``phone`` in the outbox, through the channel the
    message came on (``REPLY_VIA``), once per inbound message (refs
    ``<channel>:<message id>:<n>``)."""
    for number, text in enumerate(texts):
        queue_message(
            phone,
            text,
            kind=REPLY_KIND,
            ref=f"{channel}:{message_id}:{number}"[:80],
            language=language,
            via=REPLY_VIA.get(channel, ""),
            now=now,
        )


# Rate limits per phone number (issue 17 §5) -------------------------------------------


ALLOWED = "allowed"
TELL = "tell"  # over the budget: the polite reply, once per CHANNEL_RATE_LIMIT_NOTICE
QUIET = "quiet"  # over the budget and told already: no reply


def throttle(channel: str, phone: str) -> str:
    """Count one message of ``phone`` on ``channel`` against CHANNEL_RATE_LIMIT_PHONE
    (USSD hops: CHANNEL_RATE_LIMIT_USSD), in Flask-Limiter's storage (Redis when set).

    Returns ALLOWED; TELL when over the budget and not told within
    CHANNEL_RATE_LIMIT_NOTICE (the caller replies ``replies.rate_limited`` once); QUIET
    when over and told. Why not 429: a gateway resends a refused message (Meta retries
    a webhook for days), which only adds load; the message is taken and answered, or
    dropped, with 200. With RATELIMIT_ENABLED off every message is ALLOWED; so is one
    whose count cannot be kept (Redis down: logged), as Flask-Limiter does for the web
    (RATELIMIT_SWALLOW_ERRORS): the SMS gateway's 500s would drop residents' messages.
    """
    if not current_app.config["RATELIMIT_ENABLED"]:
        return ALLOWED
    try:
        return _count(channel, phone)
    except Exception:  # the limiter's storage is down: answer, never a 500
        log.warning("channel rate limit not counted (storage down)", exc_info=True)
        return ALLOWED


def _count(channel: str, phone: str) -> str:
    """``throttle``'s count in the limiter's storage; raises what the storage raises."""
    strategy = limiter.limiter
    key = "ussd" if channel == "ussd" else "phone"
    setting = current_app.config[
        "CHANNEL_RATE_LIMIT_USSD" if key == "ussd" else "CHANNEL_RATE_LIMIT_PHONE"
    ]
    within = True
    for item in parse_many(setting):
        # Every window is counted, so a burst does not slip past the longer one.
        within = strategy.hit(item, "channel", channel, phone) and within
    if within:
        return ALLOWED
    notice = parse_many(current_app.config["CHANNEL_RATE_LIMIT_NOTICE"])[0]
    return TELL if strategy.hit(notice, "channel-told", channel, phone) else QUIET

"""The rows of the phone channels (issue 17): a conversation per phone and channel,
and the inbound messages already taken in.

Nothing of a conversation lives in a web process's memory (DESIGN.md, scale-out): any
app host can take the next message of a USSD session or a chat.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from common.timeutil import UTCDateTime, utcnow
from extensions import db

# The channels a resident writes through (``Conversation.channel``, ``InboundMessage``).
SMS = "sms"
USSD = "ussd"
WHATSAPP = "whatsapp"
PHONE_CHANNELS = (SMS, USSD, WHATSAPP)


class Conversation(db.Model):
    """Where one phone number stands in its conversation on one channel.

    ``state`` names the menu step (``channels.conversation``); ``data`` is a JSON
    object of what the steps so far chose (a NIK in it is encrypted: ``seal``);
    ``language`` ("id"/"en") outlives a time-out. ``version`` counts the turns: each
    turn bumps it with the upsert that takes the row's lock (``open_conversation``),
    so two messages of one phone at once are taken one after the other. A row past
    ``expires_at`` starts again at the menu.
    """

    __tablename__ = "conversation"
    __table_args__ = (
        UniqueConstraint("channel", "phone", name="uq_conversation_channel_phone"),
        Index("ix_conversation_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str] = mapped_column(String(20))  # E.164
    state: Mapped[str] = mapped_column(String(32))
    data: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    version: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InboundMessage(db.Model):
    """An inbound SMS or WhatsApp message taken in, by the gateway's own id: a resend
    of the same id finds the row and does nothing (issue 17 §2, §4).

    ``body`` holds a WhatsApp message's text only until its job handles it
    (``handled_at`` set, ``body`` emptied: a NIK does not stay in the database);
    an SMS is handled in the request that takes it in.
    """

    __tablename__ = "inbound_message"
    __table_args__ = (
        UniqueConstraint("channel", "message_id", name="uq_inbound_message_channel_id"),
        Index("ix_inbound_message_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str] = mapped_column(String(128))
    phone: Mapped[str] = mapped_column(String(20))
    body: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

"""What the phone channels keep of a resident, and for how long (issue 17, DESIGN.md
privacy): the sender's number and text of each inbound message, and a conversation's
state, go RETENTION_DAYS after they were last used, as a booking's personal data does.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, update

from channels.models import Conversation, InboundMessage
from common.timeutil import utcnow
from extensions import db


def purge_channel_data(now: datetime | None = None) -> int:
    """Erase the phone numbers and texts the channels hold from before the cut-off.

    Args: now, aware UTC (default the clock); the cut-off is now - RETENTION_DAYS.
    Returns: how many rows were erased or deleted (count).
    Conversations ended before the cut-off are deleted (a new message starts afresh);
    inbound messages keep their channel and id, so a gateway's very late resend is
    still known and does nothing, but lose the sender's number and text. Safe to
    repeat; the caller commits.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config["RETENTION_DAYS"])
    conversations = db.session.execute(
        delete(Conversation)
        .where(Conversation.expires_at <= cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount
    messages = db.session.execute(
        update(InboundMessage)
        .where(InboundMessage.received_at <= cutoff, InboundMessage.phone != "")
        .values(phone="", body=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    return conversations + messages

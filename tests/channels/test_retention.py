"""The channels keep a sender's number and text no longer than RETENTION_DAYS (issue 17,
DESIGN.md privacy), and a resend after that still does nothing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from channels.models import Conversation, InboundMessage
from extensions import db
from tests.channels.conftest import E164


def test_numbers_and_texts_go_after_the_retention_days(app, send_sms):
    from jobs import run_timed_work

    assert send_sms("BANTUAN", message_id="old-1").status_code == 200
    db.session.expire_all()
    message = db.session.scalar(select(InboundMessage))
    conversation = db.session.scalar(select(Conversation))
    assert (message.phone, conversation.phone) == (E164, E164)
    received, expires = message.received_at, conversation.expires_at
    days = app.config["RETENTION_DAYS"]
    before = run_timed_work((received + timedelta(days=days - 1)).isoformat())
    assert before["channel_rows_purged"] == 0
    after = run_timed_work((expires + timedelta(days=days, minutes=1)).isoformat())
    assert after["channel_rows_purged"] == 2
    db.session.expire_all()
    kept = db.session.scalar(select(InboundMessage))
    assert (kept.message_id, kept.phone, kept.body) == ("old-1", "", None)
    assert db.session.scalar(select(Conversation)) is None
    # The gateway resends the same id: still known, nothing new is done.
    again = send_sms("BANTUAN", message_id="old-1")
    assert again.status_code == 200 and again.json["status"] == "duplicate"

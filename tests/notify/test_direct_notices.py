"""Direct notices: a message with its own recipient and text, about no booking (a ballot
entry's message, a reply to an SMS; issues 16 and 17), on both databases."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from common.timeutil import utcnow
from extensions import db
from notify.channels import DeliveryRefused, channel_named
from notify.outbox import queue_message
from notify.relay import deliver_notice, deliver_pending
from slots.models import Notice


@pytest.fixture
def log_file(app, tmp_path, monkeypatch):
    path = tmp_path / "notifications.jsonl"
    monkeypatch.setitem(app.config, "NOTIFY_LOG_FILE", str(path))
    return path


def lines(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_direct_message_is_sent_once_with_its_own_text(ctx, log_file):
    assert queue_message(
        "+6281234567890",
        "Antri: nomor undian Anda UND-1.",
        kind="ballot_entry",
        ref="ballot-entry:UND-1",
        language="id",
    )
    db.session.commit()
    # The same ref again writes nothing: a resent inbound message is answered once.
    assert not queue_message(
        "+6281234567890", "another text", kind="ballot_entry", ref="ballot-entry:UND-1"
    )
    db.session.commit()
    assert db.session.scalar(select(sa.func.count(Notice.id))) == 1
    assert deliver_pending(utcnow()) == 1
    sent = lines(log_file)
    assert [(m["to"], m["text"], m["booking"], m["kind"], m["language"]) for m in sent] == [
        ("+6281234567890", "Antri: nomor undian Anda UND-1.", "", "ballot_entry", "id")
    ]
    notice = db.session.scalar(select(Notice))
    assert (notice.status, notice.channel, notice.booking_id) == ("sent", "log", None)
    assert deliver_pending(utcnow() + timedelta(hours=1)) == 0


def test_the_database_refuses_a_notice_about_nobody(ctx):
    db.session.add(Notice(kind="reply", status="pending"))
    with pytest.raises(sa.exc.IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_racing_writers_of_one_ref_write_one_row(app, ctx):
    """Two transactions write the same ref at once (a gateway resending an SMS to two
    app hosts): one row, and neither fails."""
    barrier = threading.Barrier(4)
    results: list[bool] = []

    def write(n: int) -> None:
        with app.app_context():
            barrier.wait()
            results.append(
                queue_message("+6281200000001", f"reply {n}", kind="reply", ref="sms:abc:1")
            )
            db.session.commit()
            db.session.remove()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.session.expire_all()
    assert sorted(results) == [False, False, False, True]
    assert db.session.scalar(select(sa.func.count(Notice.id)).where(Notice.ref == "sms:abc:1")) == 1


def test_a_message_asking_for_an_unknown_channel_fails_for_admins_to_see(ctx, log_file):
    queue_message("+6281234567890", "hello", kind="reply", ref="x:1", via="pigeon")
    db.session.commit()
    notice_id = db.session.scalar(select(Notice.id))
    assert deliver_notice(notice_id, utcnow()).status == "failed"
    notice = db.session.get(Notice, notice_id)
    assert (notice.status, notice.channel) == ("failed", "pigeon")
    assert "no channel named 'pigeon'" in notice.last_error
    assert lines(log_file) == []


def test_the_default_channel_is_named_by_its_own_name_too(ctx):
    assert channel_named("").name == "log"
    assert channel_named("log").name == "log"
    with pytest.raises(DeliveryRefused):
        channel_named("whatsapp-not-yet")


def test_a_direct_message_loses_its_recipient_and_text_after_the_retention_days(app, ctx):
    from slots.housekeeping import purge_personal_data

    now = utcnow()
    queue_message("+6281234567890", "old", kind="reply", ref="old:1", now=now)
    queue_message("+6281234567891", "new", kind="reply", ref="new:1", now=now + timedelta(days=5))
    db.session.commit()
    days = app.config["RETENTION_DAYS"]
    purge_personal_data(now + timedelta(days=days))
    db.session.commit()
    rows = {n.ref: (n.to_phone, n.body, n.status) for n in db.session.scalars(select(Notice))}
    assert rows == {
        "old:1": ("", "", "void"),
        "new:1": ("+6281234567891", "new", "pending"),
    }

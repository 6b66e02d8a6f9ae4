"""The outbox in one process: messages, reminders, retries, channels, timed work.

The worker process, Redis and kill -9 are in tests/notify/test_worker.py; here the same job
functions run in the test process, on both databases, with the clock passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from common.timeutil import utcnow
from extensions import db
from notify.channels import LogChannel, Message, WebhookChannel
from notify.messages import render_notice
from notify.outbox import write_due_reminders
from notify.relay import deliver_notice, deliver_pending, relay_outbox
from slots.booking import book_slot, cancel_booking
from slots.models import Booking, Notice, Resident, Slot, WaitingListEntry
from slots.waiting import join_waiting_list
from tests.clock import today_local

JAKARTA = ZoneInfo("Asia/Jakarta")
PHONE = "081234567890"


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    """Tomorrow at hour:minute in Jakarta, as an aware UTC instant."""
    day = today_local(1)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=JAKARTA).astimezone(
        ZoneInfo("UTC")
    )


@pytest.fixture
def log_file(app, tmp_path, monkeypatch):
    path = tmp_path / "notifications.jsonl"
    monkeypatch.setitem(app.config, "NOTIFY_LOG_FILE", str(path))
    return path


def lines(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def book(client, slot_id, nik, language=None, phone=PHONE):
    body = {"slot_id": slot_id, "name": "Siti Aminah", "nik": nik, "phone": phone}
    if language:
        body["language"] = language
    return client.post("/api/v1/bookings", json=body, buffered=True)


def notice(booking_code: str, kind: str) -> Notice:
    db.session.expire_all()
    return db.session.scalar(
        select(Notice).join(Booking).where(Booking.code == booking_code, Notice.kind == kind)
    )


def test_booking_writes_its_confirmation_and_the_relay_its_reminder_when_due(
    client, make_slot, nik, log_file
):
    from notify.outbox import write_due_reminders

    starts = tomorrow_at(9)
    slot = make_slot(capacity=2, starts_in=0, now=starts)
    code = book(client, slot.id, nik()).json["code"]
    confirmation = notice(code, "confirmation")
    assert confirmation.status == "sent" and confirmation.attempts == 1
    assert notice(code, "reminder") is None
    # REMINDER_MINUTES (60) before 09:00 WIB is 08:00 WIB: written then, not before.
    due = starts - timedelta(minutes=60)
    assert write_due_reminders(due - timedelta(seconds=1)) == 0
    assert write_due_reminders(due) == 1
    db.session.commit()
    reminder = notice(code, "reminder")
    assert (reminder.status, reminder.due_at) == ("pending", due)
    assert reminder.due_at.astimezone(JAKARTA).strftime("%H:%M") == "08:00"
    assert write_due_reminders(due + timedelta(minutes=5)) == 0  # one per booking
    assert [line["kind"] for line in lines(log_file)] == ["confirmation"]


def test_the_resident_is_sent_the_proxy_messages(client, make_slot, nik, log_file):
    """Issue 15 part 3: "the resident is messaged when a proxy is set or removed". The
    relay voided both kinds (not in its kinds to send), so no message ever left."""
    slot = make_slot(capacity=2, starts_in=120)
    code = book(client, slot.id, nik()).json["code"]
    proxy = {"phone": PHONE, "proxy_name": "Siti Aminah", "proxy_nik": nik()}
    url = f"/api/v1/bookings/{code}/proxy"
    assert client.post(url, json=proxy, buffered=True).status_code == 200
    assert notice(code, "proxy_set").status == "sent"
    assert client.delete(url, json={"phone": PHONE}, buffered=True).status_code == 200
    assert notice(code, "proxy_removed").status == "sent"
    sent = lines(log_file)
    assert [line["kind"] for line in sent] == ["confirmation", "proxy_set", "proxy_removed"]
    assert all("Siti Aminah" in line["text"] for line in sent[1:]), sent
    # The ticket page's form: the message leaves at once too (its notice is the
    # transaction's last, unflushed write).
    from slots.codes import booking_access_key

    ticket = f"/tickets/{code}/{booking_access_key(code)}/proxy"
    form = {"proxy_name": "Budi Santoso", "proxy_nik": proxy["proxy_nik"], "phone": PHONE}
    assert client.post(ticket, data=form, buffered=True).status_code == 303
    assert notice(code, "proxy_set").status == "sent"
    assert [line["kind"] for line in lines(log_file)][-1] == "proxy_set"
    assert "Budi Santoso" in lines(log_file)[-1]["text"]
    # Once the booking is no longer confirmed, a late proxy message is not sent.
    proxy_set = notice(code, "proxy_set")
    db.session.execute(sa.update(Booking).where(Booking.code == code).values(status="cancelled"))
    db.session.execute(
        sa.update(Notice).where(Notice.id == proxy_set.id).values(status="pending", attempts=0)
    )
    db.session.commit()
    assert deliver_notice(proxy_set.id).status == "void"


def test_a_slot_starting_within_the_reminder_time_gets_no_reminder(client, make_slot, nik):
    slot = make_slot(capacity=2, starts_in=45)
    code = book(client, slot.id, nik()).json["code"]
    assert notice(code, "confirmation").status == "sent"
    # Booked after its reminder time: the confirmation is its reminder.
    assert deliver_pending(now=slot.starts_at - timedelta(minutes=10)) == 0
    assert notice(code, "reminder") is None


def test_reminder_goes_out_at_its_local_time_once(client, make_slot, nik, log_file):
    starts = tomorrow_at(9)
    slot = make_slot(capacity=2, starts_in=0, now=starts)
    code = book(client, slot.id, nik()).json["code"]
    due = starts - timedelta(minutes=60)
    assert deliver_pending(now=due - timedelta(seconds=1)) == 0
    assert deliver_pending(now=due) == 1
    assert deliver_pending(now=due + timedelta(minutes=5)) == 0
    sent = [line for line in lines(log_file) if line["kind"] == "reminder"]
    assert len(sent) == 1
    assert sent[0]["booking"] == code and sent[0]["to"] == "+6281234567890"
    local = starts.astimezone(JAKARTA)
    assert f"{local:%d-%m-%Y} 09:00 WIB" in sent[0]["text"]
    assert sent[0]["text"].startswith("Antri: pengingat")
    assert f"/tickets/{code}/" in sent[0]["text"]


def test_messages_follow_the_residents_language(client, make_slot, nik, log_file):
    slot = make_slot(capacity=3, starts_in=180)
    english = book(client, slot.id, nik(), language="en").json["code"]
    indonesian = book(client, slot.id, nik(), phone="081211112222").json["code"]
    by_code = {line["booking"]: line for line in lines(log_file)}
    assert by_code[english]["language"] == "en"
    # The first booking gets the first arrival wave (the slot's start), the second the
    # next, 10 minutes later (issue 15).
    first = slot.starts_at.astimezone(JAKARTA)
    second = first + timedelta(minutes=10)
    assert f" is confirmed; arrive at {first:%H:%M}. Ticket: " in by_code[english]["text"]
    assert by_code[indonesian]["language"] == "id"
    assert f" berhasil; datang pukul {second:%H:%M}. Tiket: " in by_code[indonesian]["text"]
    bad = book(client, slot.id, nik(), language="fr")
    assert bad.status_code == 422 and bad.json["error"] == "invalid_language"


def test_web_form_booking_keeps_the_page_language(client, make_slot, nik, log_file):
    slot = make_slot(capacity=3, starts_in=180)
    answer = client.post(
        f"/slots/{slot.id}/book?lang=en",
        data={"name": "Ani", "nik": nik(), "phone": PHONE, "request_id": "r-lang-1"},
        buffered=True,
    )
    assert answer.status_code == 302
    assert db.session.scalar(select(Booking.language)) == "en"
    assert lines(log_file)[0]["language"] == "en"


def test_every_kind_renders_in_both_languages(ctx, make_slot, nik):
    slot = make_slot(capacity=2, starts_in=0, now=tomorrow_at(10, 30))
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    for language in ("id", "en"):
        booking.language = language
        for kind in ("confirmation", "reminder", "cancellation", "promotion"):
            text = render_notice(Notice(booking=booking, kind=kind))
            assert booking.code in text or kind == "reminder"
            assert "10:30 WIB" in text
        for kind in ("slot_closed", "slot_moved"):
            assert "Pasar Uji" in render_notice(Notice(booking=booking, kind=kind))
    db.session.rollback()


def test_one_notice_per_booking_and_kind_is_enforced_by_the_database(ctx, make_slot, nik):
    slot = make_slot(capacity=2, starts_in=180)
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    db.session.add(Notice(booking_id=booking.id, kind="confirmation"))
    with pytest.raises(sa.exc.IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_cancelled_booking_reminder_is_void_and_never_sent(client, make_slot, nik, log_file):
    starts = tomorrow_at(9)
    slot = make_slot(capacity=2, starts_in=0, now=starts)
    code = book(client, slot.id, nik()).json["code"]
    cancel = client.post(f"/api/v1/bookings/{code}/cancel", json={"phone": PHONE}, buffered=True)
    assert cancel.status_code == 200
    assert deliver_pending(now=starts - timedelta(minutes=30)) == 0
    assert notice(code, "reminder") is None
    assert [line["kind"] for line in lines(log_file)] == ["confirmation", "cancellation"]


def test_reminder_of_a_booking_that_moved_on_is_voided_when_due(ctx, make_slot, nik, log_file):
    starts = tomorrow_at(9)
    slot = make_slot(capacity=2, starts_in=0, now=starts)
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    write_due_reminders(starts - timedelta(minutes=60))
    db.session.commit()
    # Checked in early by a direct update (the gate's rules are not the point here).
    db.session.execute(sa.update(Booking).values(status="checked_in"))
    db.session.commit()
    reminder = notice(booking.code, "reminder")
    assert deliver_notice(reminder.id, starts).status == "void"
    assert notice(booking.code, "reminder").status == "void"
    assert lines(log_file) == []


class FailingChannel:
    name = "log"

    def __init__(self, error):
        self.error = error
        self.calls = []

    def send(self, message, *, repeat, now, fence):
        self.calls.append((message.id, repeat))
        raise self.error


def test_failures_back_off_then_fail_for_admins_to_see(app, ctx, make_slot, nik, monkeypatch):
    from notify.channels import DeliveryError
    from notify.outbox import failed_notices

    monkeypatch.setitem(app.config, "NOTIFY_MAX_ATTEMPTS", 4)
    slot = make_slot(capacity=2, starts_in=300)
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    first = notice(booking.code, "confirmation")
    channel = FailingChannel(DeliveryError("gateway answered 503"))
    now = utcnow()
    delays = []
    for _ in range(3):
        outcome = deliver_notice(first.id, now, channel)
        assert outcome.status == "retry"
        delays.append((outcome.retry_at - now).total_seconds())
        # Not due before its back-off has passed.
        assert deliver_notice(
            first.id, outcome.retry_at - timedelta(seconds=1), channel
        ).status == ("skipped")
        now = outcome.retry_at
    assert delays == [30, 60, 120]
    assert deliver_notice(first.id, now, channel).status == "failed"
    row = notice(booking.code, "confirmation")
    assert (row.status, row.attempts) == ("failed", 4)
    assert row.last_error == "DeliveryError: gateway answered 503"
    assert [call[1] for call in channel.calls] == [False, True, True, True]
    assert [n.id for n in failed_notices()] == [first.id]
    # A failed notice is not picked up again by the relay (the reminder it writes is).
    relayed = relay_outbox(slot.starts_at - timedelta(minutes=30))
    assert relayed == [notice(booking.code, "reminder").id]


def test_a_refusal_fails_at_once(ctx, make_slot, nik):
    from notify.channels import DeliveryRefused

    slot = make_slot(capacity=2, starts_in=300)
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    first = notice(booking.code, "confirmation")
    outcome = deliver_notice(first.id, utcnow(), FailingChannel(DeliveryRefused("400")))
    assert outcome.status == "failed"
    assert notice(booking.code, "confirmation").attempts == 1


def test_a_sender_that_died_is_taken_over_after_its_lease(app, ctx, make_slot, nik, log_file):
    slot = make_slot(capacity=2, starts_in=300)
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    first = notice(booking.code, "confirmation")
    now = utcnow()
    lease = app.config["NOTIFY_LEASE_SECONDS"]
    # A worker claimed it, wrote the line, and died before marking it sent.
    channel = LogChannel(log_file)
    db.session.execute(
        sa.update(Notice)
        .where(Notice.id == first.id)
        .values(status="sending", attempts=1, lease_until=now + timedelta(seconds=lease))
    )
    db.session.commit()
    channel.send(message_for_id(first.id), repeat=False, now=now)
    # While the lease runs nobody else takes it.
    assert relay_outbox(now + timedelta(seconds=lease - 1)) == []
    assert deliver_notice(first.id, now + timedelta(seconds=lease - 1)).status == "skipped"
    later = now + timedelta(seconds=lease + 1)
    assert relay_outbox(later) == [first.id]
    db.session.commit()
    assert deliver_notice(first.id, later).status == "sent"
    row = notice(booking.code, "confirmation")
    assert (row.status, row.attempts) == ("sent", 2)
    assert [line["id"] for line in lines(log_file)] == [f"antri-notice-{first.id}"]


def message_for_id(notice_id: int) -> Message:
    from notify.messages import message_for

    return message_for(db.session.get(Notice, notice_id))


def test_log_channel_writes_a_repeated_message_once_and_lines_whole(tmp_path):
    channel = LogChannel(tmp_path / "sub" / "log.jsonl")
    now = utcnow()

    def message(n: int) -> Message:
        return Message(f"antri-notice-{n}", "confirmation", "ACDEFGHJ", "+62812", "id", "é" * 500)

    threads = [
        threading.Thread(
            target=channel.send, args=(message(n % 20),), kwargs={"repeat": True, "now": now}
        )
        for n in range(60)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = lines(tmp_path / "sub" / "log.jsonl")
    assert sorted(line["id"] for line in written) == sorted(f"antri-notice-{n}" for n in range(20))
    assert all(line["text"] == "é" * 500 for line in written)


class Gateway(BaseHTTPRequestHandler):
    """A fake SMS gateway: answers the statuses queued in ``server.answers``."""

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))
        status = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    server.received, server.answers = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_signs_retries_and_keeps_one_idempotency_key(
    app, ctx, make_slot, nik, gateway, monkeypatch
):
    url = f"http://127.0.0.1:{gateway.server_address[1]}/sms"
    for key, value in {
        "NOTIFY_CHANNEL": "webhook",
        "NOTIFY_WEBHOOK_URL": url,
        "NOTIFY_WEBHOOK_SECRET": "gateway-secret",
    }.items():
        monkeypatch.setitem(app.config, key, value)
    slot = make_slot(capacity=2, starts_in=300)
    booking = book_slot(slot.id, "Ani", nik(), PHONE, language="en")
    db.session.commit()
    first = notice(booking.code, "confirmation")
    gateway.answers = [503, 429, 200]
    now = utcnow()
    statuses = []
    for _ in range(3):
        outcome = deliver_notice(first.id, now)
        statuses.append(outcome.status)
        now = outcome.retry_at or now
    assert statuses == ["retry", "retry", "sent"]
    keys = {headers["Idempotency-Key"] for headers, _ in gateway.received}
    assert keys == {f"antri-notice-{first.id}"}
    headers, body = gateway.received[-1]
    expected = hmac.new(b"gateway-secret", body, hashlib.sha256).hexdigest()
    assert headers["X-Antri-Signature"] == f"sha256={expected}"
    payload = json.loads(body)
    assert (payload["to"], payload["kind"], payload["language"]) == (
        "+6281234567890",
        "confirmation",
        "en",
    )
    gateway.answers = [400]
    write_due_reminders(slot.starts_at - timedelta(minutes=60))
    db.session.commit()
    reminder = notice(booking.code, "reminder")
    assert deliver_notice(reminder.id, slot.starts_at).status == "failed"


def test_webhook_channel_unreachable_is_a_retry(tmp_path):
    from notify.channels import DeliveryError

    channel = WebhookChannel("http://127.0.0.1:9/", "s", timeout=2)
    with pytest.raises(DeliveryError):
        channel.send(
            Message("antri-notice-1", "confirmation", "X", "+62", "id", "t"),
            repeat=False,
            now=utcnow(),
        )


# Timed work ------------------------------------------------------------------------


def _full_slot_with_a_waiting_resident(client, make_slot, nik, starts_in=-20):
    from common.transactions import commit

    slot = make_slot(capacity=1, starts_in=starts_in, minutes=60)
    # Booked and joined hours ahead, as residents do.
    ahead = slot.starts_at - timedelta(hours=2)
    holder = book_slot(slot.id, "Ani", nik(), PHONE, now=ahead)
    commit()
    entry = join_waiting_list(slot.id, "Rudi", nik(), "081211110006", now=ahead)
    commit()
    return slot, holder, entry


def test_a_late_resident_s_place_goes_to_the_waiting_list(app, client, make_slot, nik, log_file):
    from jobs import run_timed_work

    slot, holder, entry = _full_slot_with_a_waiting_resident(client, make_slot, nik)
    # The job ends the session it ran in: keep plain values, not the ORM objects.
    slot_id, starts, holder_id, entry_id = slot.id, slot.starts_at, holder.id, entry.id
    grace = app.config["NO_SHOW_GRACE_MINUTES"]
    assert grace == 15
    too_soon = starts + timedelta(minutes=grace - 1)
    assert run_timed_work(too_soon.isoformat())["released"] == 0
    counts = run_timed_work((starts + timedelta(minutes=grace)).isoformat())
    assert counts["released"] == 1
    assert db.session.get(Booking, holder_id).status == "no_show"
    promoted = db.session.get(WaitingListEntry, entry_id)
    assert promoted.status == "promoted"
    new = db.session.get(Booking, promoted.booking_id)
    assert (new.status, new.phone) == ("confirmed", "+6281211110006")
    assert db.session.get(Slot, slot_id).booked_count == 1
    # (No reminder: the slot had started before any relay ran.)
    assert [line["kind"] for line in lines(log_file)] == ["confirmation", "promotion"]


def test_nobody_waiting_means_no_release(app, ctx, make_slot, nik):
    from jobs import run_timed_work

    slot = make_slot(capacity=1, starts_in=-20, minutes=60)
    booking_id = book_slot(slot.id, "Ani", nik(), PHONE).id
    db.session.commit()
    assert run_timed_work(utcnow().isoformat())["released"] == 0
    assert db.session.get(Booking, booking_id).status == "confirmed"


def test_no_show_is_marked_once_the_window_plus_grace_has_passed(app, ctx, make_slot, nik):
    from jobs import run_timed_work

    starts = tomorrow_at(9)
    slot = make_slot(capacity=2, starts_in=0, minutes=30, now=starts)
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    booking_id, code, slot_id = booking.id, booking.code, slot.id
    # Window 09:00-09:30 WIB plus CHECKIN_LATE_MINUTES (30): no-show from 10:00 WIB.
    assert run_timed_work(tomorrow_at(9, 59).isoformat())["no_shows"] == 0
    assert run_timed_work(tomorrow_at(10, 0).isoformat())["no_shows"] == 1
    assert db.session.get(Booking, booking_id).status == "no_show"
    assert db.session.get(Slot, slot_id).booked_count == 0
    assert notice(code, "reminder") is None  # no relay ran before the slot
    assert run_timed_work(tomorrow_at(10, 1).isoformat())["no_shows"] == 0


def test_personal_data_is_purged_after_the_retention_days(app, ctx, make_slot, nik):
    from jobs import run_timed_work

    slot = make_slot(capacity=2, starts_in=0, minutes=30, now=tomorrow_at(9))
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    later = make_slot(capacity=2, starts_in=0, now=tomorrow_at(9) + timedelta(days=40))
    later.published_at = utcnow() - timedelta(days=1)
    db.session.commit()
    keep = book_slot(later.id, "Budi", nik(), "081299998888")
    db.session.commit()
    ends, booking_id, code, keep_id = slot.ends_at, booking.id, booking.code, keep.id
    days = app.config["RETENTION_DAYS"]
    assert run_timed_work((ends + timedelta(days=days - 1)).isoformat())["bookings_purged"] == 0
    counts = run_timed_work((ends + timedelta(days=days)).isoformat())
    assert (counts["bookings_purged"], counts["residents_purged"]) == (1, 1)
    purged = db.session.get(Booking, booking_id)
    assert (purged.name, purged.phone, purged.nik_last4, purged.resident_id) == ("", "", "", None)
    assert purged.status == "no_show" and purged.code == code
    kept = db.session.get(Booking, keep_id)
    assert (kept.name, kept.phone) == ("Budi", "+6281299998888")
    assert db.session.scalar(select(sa.func.count(Resident.id))) == 1
    assert run_timed_work((ends + timedelta(days=days + 1)).isoformat())["bookings_purged"] == 0


def test_timed_work_refuses_a_naive_instant(ctx):
    from jobs import run_timed_work

    with pytest.raises(ValueError):
        run_timed_work("2026-12-01T09:00:00")


def test_admins_see_failed_messages_and_send_them_again(app, client, make_slot, make_user, nik):
    from notify.channels import DeliveryRefused

    make_user("admin@antri.test", "admin")
    make_user("super@antri.test", "supervisor")
    slot = make_slot(capacity=2, starts_in=300)
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    code, notice_id = booking.code, notice(booking.code, "confirmation").id
    deliver_notice(notice_id, utcnow(), FailingChannel(DeliveryRefused("gateway refused with 400")))

    client.post("/login", data={"email": "super@antri.test", "password": "correct-horse-1"})
    assert client.get("/admin/notices").status_code == 403
    client.post("/logout")
    client.post("/login", data={"email": "admin@antri.test", "password": "correct-horse-1"})
    page = client.get("/admin/notices")
    assert page.status_code == 200
    assert code in page.text and "DeliveryRefused: gateway refused with 400" in page.text
    retried = client.post("/admin/notices/retry", follow_redirects=True)
    assert retried.status_code == 200 and code not in retried.text
    again = notice(code, "confirmation")
    assert (again.status, again.attempts) == ("pending", 0)
    from common.audit import AuditEntry

    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "notices.retry"))
    assert (entry.actor, entry.after, entry.remote_addr) == (
        "admin@antri.test",
        '{"count": 1}',
        "127.0.0.1",
    )


def test_without_redis_requests_run_the_sweep_now_and_then(
    app, client, make_slot, nik, log_file, monkeypatch
):
    import jobs

    slot = make_slot(capacity=2, starts_in=0, minutes=30, now=utcnow() - timedelta(hours=2))
    # A booking whose slot ended 90 minutes ago, never checked in, whose confirmation
    # a crash left pending, and a later booking whose confirmation is pending too: the
    # sweep marks the no-show, voids the stale confirmation and sends the other.
    past = Booking(
        code="ACDEFGHJ",
        slot=slot,
        name="Ani",
        nik_last4="0001",
        phone="+6281234567890",
        status="confirmed",
    )
    db.session.add(past)
    db.session.add(Notice(booking=past, kind="confirmation"))
    db.session.execute(sa.update(Slot).values(booked_count=1))
    future = book_slot(make_slot(capacity=2, starts_in=300).id, "Budi", nik(), PHONE)
    db.session.commit()
    past_id, future_code = past.id, future.code
    monkeypatch.setitem(app.config, "INLINE_SWEEP_SECONDS", 60)
    monkeypatch.setattr(jobs, "_last_sweep", 0.0)
    assert client.get("/", buffered=True).status_code == 200
    db.session.expire_all()
    assert db.session.get(Booking, past_id).status == "no_show"
    assert notice("ACDEFGHJ", "confirmation").status == "void"
    assert [line["booking"] for line in lines(log_file)] == [future_code]
    # Within the interval the next request does not sweep again.
    cancel_booking(db.session.get(Booking, future.id))
    db.session.commit()
    client.get("/", buffered=True)
    assert len(lines(log_file)) == 1


def test_webhook_does_not_follow_a_redirect(gateway):
    from notify.channels import DeliveryRefused

    gateway.answers = [302]
    channel = WebhookChannel(f"http://127.0.0.1:{gateway.server_address[1]}/", "s", timeout=5)
    message = Message("antri-notice-7", "confirmation", "X", "+62", "id", "t")
    with pytest.raises(DeliveryRefused, match="302"):
        channel.send(message, repeat=False, now=utcnow())
    assert len(gateway.received) == 1


# Found by breaking it ------------------------------------------------------------------


def test_a_promoted_resident_is_not_released_a_minute_later(app, client, make_slot, nik, log_file):
    from jobs import run_timed_work

    slot, holder, first = _full_slot_with_a_waiting_resident(client, make_slot, nik)
    second = join_waiting_list(
        slot.id, "Wati", nik(), "081211110007", now=slot.starts_at - timedelta(hours=2)
    )
    db.session.commit()
    slot_id, starts, first_id, second_id = slot.id, slot.starts_at, first.id, second.id
    grace = timedelta(minutes=app.config["NO_SHOW_GRACE_MINUTES"])
    now = starts + grace + timedelta(minutes=5)
    assert run_timed_work(now.isoformat())["released"] == 1
    promoted = db.session.get(WaitingListEntry, first_id).booking_id
    # The promoted booking gets its own grace, counted from when it was made.
    assert run_timed_work((now + timedelta(minutes=1)).isoformat())["released"] == 0
    assert db.session.get(Booking, promoted).status == "confirmed"
    assert db.session.get(WaitingListEntry, second_id).status == "waiting"
    assert db.session.get(Slot, slot_id).booked_count == 1


def test_no_release_when_nobody_waiting_may_take_the_place(app, client, make_slot, nik):
    from jobs import run_timed_work

    person = nik()
    slot = make_slot(capacity=1, starts_in=-20, minutes=60)
    holder = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    join_waiting_list(slot.id, "Rudi", person, "081211110006")
    db.session.commit()
    # The waiting resident books elsewhere in the meantime: over the per-NIK limit.
    book_slot(make_slot(capacity=1, starts_in=120).id, "Rudi", person, "081211110006")
    db.session.commit()
    holder_id, slot_id = holder.id, slot.id
    assert run_timed_work(utcnow().isoformat())["released"] == 0
    assert db.session.get(Booking, holder_id).status == "confirmed"
    assert db.session.get(Slot, slot_id).booked_count == 1


def test_a_confirmation_not_yet_sent_is_void_once_cancelled(ctx, make_slot, nik, log_file):
    slot = make_slot(capacity=2, starts_in=300)
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    cancel_booking(booking)
    db.session.commit()
    code = booking.code
    confirmation, cancellation = notice(code, "confirmation"), notice(code, "cancellation")
    assert deliver_notice(confirmation.id).status == "void"
    assert deliver_notice(cancellation.id).status == "sent"
    assert [line["kind"] for line in lines(log_file)] == ["cancellation"]
    assert f"/tickets/{code}/" in lines(log_file)[0]["text"]


def test_a_stalled_sender_whose_claim_was_taken_writes_nothing(app, ctx, make_slot, nik, log_file):
    slot = make_slot(capacity=2, starts_in=300)
    booking = book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.commit()
    notice_id = notice(booking.code, "confirmation").id
    lease = app.config["NOTIFY_LEASE_SECONDS"]

    class Stalling:
        """Sender A: stalls past its lease; sender B claims and sends meanwhile."""

        name = "log"

        def send(self, message, *, repeat, now, fence):
            later = utcnow() + timedelta(seconds=lease + 1)
            assert deliver_notice(notice_id, later).status == "sent"  # B, a fresh claim
            LogChannel(log_file).send(message, repeat=repeat, now=now, fence=fence)

    assert deliver_notice(notice_id, utcnow(), Stalling()).status == "superseded"
    assert [line["id"] for line in lines(log_file)] == [f"antri-notice-{notice_id}"]
    row = notice(booking.code, "confirmation")
    assert (row.status, row.attempts) == ("sent", 2)


def test_a_batch_gives_every_claim_a_lease_from_its_own_start(app, ctx, make_slot, nik, log_file):
    slot = make_slot(capacity=5, starts_in=300)
    for n in range(3):
        book_slot(slot.id, "Ani", nik(), f"08121111000{n}")
    db.session.commit()
    started = utcnow()
    assert deliver_pending() == 3
    leases_ok = db.session.scalars(select(Notice.sent_at).where(Notice.status == "sent")).all()
    assert len(leases_ok) == 3 and all(at >= started for at in leases_ok)


class Trickle(BaseHTTPRequestHandler):
    """A gateway that answers one byte every half second."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(1)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.5)

    def log_message(self, *args):
        pass


def test_webhook_gives_up_on_a_gateway_that_trickles_past_the_timeout():
    from notify.channels import DeliveryError

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        channel = WebhookChannel(f"http://127.0.0.1:{server.server_address[1]}/", "s", timeout=2)
        started = time.monotonic()
        with pytest.raises(DeliveryError):
            channel.send(
                Message("antri-notice-9", "confirmation", "X", "+62", "id", "t"),
                repeat=False,
                now=utcnow(),
            )
        assert time.monotonic() - started < 3.5
        assert server.received == [1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_URL": "redis://127.0.0.1:6379/abc"}, "database must be a number"),
        ({"NOTIFY_LEASE_SECONDS": "10", "NOTIFY_WEBHOOK_TIMEOUT": "5"}, "more than twice"),
        ({"NOTIFY_CHANNEL": "webhook", "NOTIFY_WEBHOOK_URL": "http://gw"}, "SECRET"),
        (
            {"NOTIFY_CHANNEL": "webhook", "NOTIFY_WEBHOOK_URL": "http://:80/x"},
            "with a host",
        ),
    ],
)
def test_bad_job_settings_stop_the_start(tmp_path, env, message):
    from config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, env)

"""Background jobs end to end: the real Redis, real ``flask worker`` processes, kill -9.

Each test books through the app (which hands the notice to RQ after its response),
then runs ``flask worker`` subprocesses against the same database and Redis and reads
what the channel delivered. A queue of its own per test keeps runs apart.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
import redis
from rq import Queue
from sqlalchemy import select

import jobs
from extensions import db
from notify.relay import KICK_KEY
from slots.models import Booking, Notice
from tests.clock import today_local
from tests.servers import REPO, VENV_BIN, TcpProxy

JAKARTA = ZoneInfo("Asia/Jakarta")
PHONE = "081234567890"
# A claim that a killed worker leaves behind runs out in 3 s (the lease must be more
# than twice the webhook timeout).
SHORT_LEASE = {"NOTIFY_LEASE_SECONDS": "3", "NOTIFY_WEBHOOK_TIMEOUT": "1"}


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    day = today_local(1)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=JAKARTA)


class Setup:
    """The settings one test shares between its app and its worker processes."""

    def __init__(self, app, redis_url: str, tmp_path, monkeypatch) -> None:
        self.app = app
        self.redis_url = redis_url
        self.queue_name = f"antri-test-{uuid.uuid4().hex[:8]}"
        self.log_file = tmp_path / "notifications.jsonl"
        for key, value in {
            "REDIS_URL": redis_url,
            "RQ_QUEUE": self.queue_name,
            "NOTIFY_LOG_FILE": str(self.log_file),
        }.items():
            monkeypatch.setitem(app.config, key, value)
        monkeypatch.setattr(jobs, "_redis_down_until", 0.0)

    def env(self, **extra: str) -> dict[str, str]:
        config = self.app.config
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("NOTIFY_", "REDIS", "DATABASE", "RQ_"))
        }
        env.update(
            FLASK_APP="app",
            PYTHONUNBUFFERED="1",
            ANTRI_INSTANCE_PATH=self.app.instance_path,
            DATABASE_URL=config["SQLALCHEMY_DATABASE_URI"],
            SECRET_KEY=config["SECRET_KEY"],
            NIK_HASH_KEY=config["NIK_HASH_KEY"],
            TICKET_KEY_DIR=config["TICKET_KEY_DIR"],
            REDIS_URL=self.redis_url,
            RQ_QUEUE=self.queue_name,
            NOTIFY_LOG_FILE=str(self.log_file),
            **extra,
        )
        return env

    def burst(self, **extra: str) -> str:
        """Run ``flask worker --burst`` to the end; return its output."""
        done = subprocess.run(
            [str(VENV_BIN / "flask"), "worker", "--burst"],
            cwd=REPO,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def start(self, **extra: str) -> subprocess.Popen:
        """Start a long-running ``flask worker``."""
        return subprocess.Popen(
            [str(VENV_BIN / "flask"), "worker"],
            cwd=REPO,
            env=self.env(**extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, to see nothing outlives it
        )

    def queue(self) -> Queue:
        return Queue(self.queue_name, connection=redis.Redis.from_url(self.redis_url))

    def lines(self) -> list[dict]:
        if not self.log_file.exists():
            return []
        text = self.log_file.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def setup(app, ctx, redis_url, tmp_path, monkeypatch) -> Setup:
    return Setup(app, redis_url, tmp_path, monkeypatch)


def book(client, slot_id, nik, phone=PHONE):
    body = {"slot_id": slot_id, "name": "Siti Aminah", "nik": nik, "phone": phone}
    return client.post("/api/v1/bookings", json=body, buffered=True)


def row(code: str, kind: str = "confirmation") -> Notice:
    db.session.rollback()  # a fresh snapshot: other processes wrote since
    return db.session.scalar(
        select(Notice).join(Booking).where(Booking.code == code, Notice.kind == kind)
    )


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_booking_yields_exactly_one_confirmation(client, make_slot, nik, setup):
    slot = make_slot(capacity=2, starts_in=180)
    answer = book(client, slot.id, nik())
    assert answer.status_code == 201
    code = answer.json["code"]
    # After its response the app asked a worker to relay the outbox (one relay job);
    # nothing is handed on or sent yet.
    assert [job.func_name for job in setup.queue().jobs] == ["jobs.relay"]
    assert row(code).status == "pending" and row(code).queued_at is None
    assert setup.lines() == []
    setup.burst()
    sent = setup.lines()
    assert [(line["kind"], line["booking"], line["to"]) for line in sent] == [
        ("confirmation", code, "+6281234567890")
    ]
    assert (row(code).status, row(code).attempts) == ("sent", 1)
    # Running the worker again sends nothing more, relay included.
    setup.burst()
    assert len(setup.lines()) == 1


def test_worker_killed_mid_job_still_sends_exactly_once(client, make_slot, nik, setup):
    slot = make_slot(capacity=2, starts_in=180)
    code = book(client, slot.id, nik()).json["code"]
    setup.log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(setup.log_file, "a+") as hold:
        # Holding the log's lock stops the worker inside the job, between its claim
        # and its write: kill it there.
        fcntl.flock(hold, fcntl.LOCK_EX)
        worker = setup.start(**SHORT_LEASE)
        try:
            wait_for(lambda: row(code).status == "sending", what="the worker's claim")
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        fcntl.flock(hold, fcntl.LOCK_UN)
    # One process per worker: killing it leaves no scheduler child running on.
    with pytest.raises(ProcessLookupError):
        os.killpg(worker.pid, 0)
    assert setup.lines() == []
    assert (row(code).status, row(code).attempts) == ("sending", 1)
    time.sleep(3.2)  # the dead worker's 3-second lease runs out
    setup.burst(**SHORT_LEASE)
    assert [line["kind"] for line in setup.lines()] == ["confirmation"]
    assert (row(code).status, row(code).attempts) == ("sent", 2)
    setup.burst(**SHORT_LEASE)
    assert len(setup.lines()) == 1


class StallingGateway(BaseHTTPRequestHandler):
    """A gateway that takes the first message, then stalls until released."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.keys.append(self.headers["Idempotency-Key"])
        if len(self.server.keys) == 1:
            self.server.arrived.set()
            self.server.release.wait(30)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_worker_killed_after_the_gateway_took_it_resends_under_the_same_key(
    client, make_slot, nik, setup
):
    server = ThreadingHTTPServer(("127.0.0.1", 0), StallingGateway)
    server.keys, server.arrived, server.release = [], threading.Event(), threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    webhook = {
        "NOTIFY_CHANNEL": "webhook",
        "NOTIFY_WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/send",
        "NOTIFY_WEBHOOK_SECRET": "s3cret",
        **SHORT_LEASE,
    }
    try:
        slot = make_slot(capacity=2, starts_in=180)
        code = book(client, slot.id, nik()).json["code"]
        worker = setup.start(**webhook)
        try:
            assert server.arrived.wait(60), "the gateway got nothing"
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        server.release.set()
        assert row(code).status == "sending"
        time.sleep(3.2)
        setup.burst(**webhook)
        notice = row(code)
        assert (notice.status, notice.attempts) == ("sent", 2)
        # Two deliveries reached the gateway under one key: it keeps one message.
        assert server.keys == [f"antri-notice-{notice.id}"] * 2
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def test_a_rush_kicks_the_relay_once_a_second_and_every_confirmation_follows(
    app, client, make_slot, nik, setup, monkeypatch
):
    monkeypatch.setitem(app.config, "RELAY_KICK_SECONDS", 1)
    # A fresh kick (no interval running from an earlier test), injected as the app does.
    monkeypatch.setitem(app.extensions, KICK_KEY, jobs.RelayKick())
    slot = make_slot(capacity=5, starts_in=180)
    started = time.monotonic()
    codes = [book(client, slot.id, nik()).json["code"] for _ in range(4)]
    assert time.monotonic() - started < 1.0, "the bookings must fall within one interval"
    # The first booking kicked at once; the other three wait for one deferred kick.
    assert [job.func_name for job in setup.queue().jobs] == ["jobs.relay"]
    wait_for(lambda: setup.queue().count == 2, timeout=5, what="the deferred kick")
    assert time.monotonic() - started >= 0.9
    time.sleep(1.2)
    assert setup.queue().count == 2
    setup.burst()
    sent = [line["booking"] for line in setup.lines() if line["kind"] == "confirmation"]
    assert sorted(sent) == sorted(codes)


def test_with_redis_down_booking_succeeds_and_the_message_follows(
    app, client, make_slot, nik, setup, monkeypatch
):
    db_number = setup.redis_url.rsplit("/", 1)[1]
    proxy = TcpProxy(("127.0.0.1", 6379))
    url = f"redis://{proxy.url_host}/{db_number}"
    monkeypatch.setitem(app.config, "REDIS_URL", url)
    setup.redis_url = url
    slot = make_slot(capacity=3, starts_in=180)
    started = time.monotonic()
    first = book(client, slot.id, nik())
    second = book(client, slot.id, nik(), phone="081211112222")
    elapsed = time.monotonic() - started
    assert (first.status_code, second.status_code) == (201, 201)
    assert elapsed < 3.0, f"two bookings took {elapsed:.1f} s with Redis down"
    codes = [first.json["code"], second.json["code"]]
    assert [row(code).status for code in codes] == ["pending", "pending"]
    assert [row(code).queued_at for code in codes] == [None, None]
    proxy.start()
    try:
        setup.burst()
    finally:
        proxy.stop()
    assert sorted(line["booking"] for line in setup.lines()) == sorted(codes)
    assert [row(code).status for code in codes] == ["sent", "sent"]


def test_reminders_and_no_shows_fire_at_the_local_time_given(client, make_slot, nik, setup):
    starts = tomorrow_at(9)
    slot = make_slot(capacity=2, starts_in=0, minutes=30, now=starts.astimezone(ZoneInfo("UTC")))
    code = book(client, slot.id, nik()).json["code"]
    queue = setup.queue()
    queue.enqueue(jobs.relay, tomorrow_at(7, 59).isoformat())
    setup.burst()
    assert [line["kind"] for line in setup.lines()] == ["confirmation"]
    queue.enqueue(jobs.relay, tomorrow_at(8, 0).isoformat())
    setup.burst()
    sent = setup.lines()
    assert [line["kind"] for line in sent] == ["confirmation", "reminder"]
    assert f"{starts:%d-%m-%Y} 09:00 WIB" in sent[1]["text"]
    queue.enqueue(jobs.run_timed_work, tomorrow_at(9, 59).isoformat())
    setup.burst()
    db.session.rollback()
    assert db.session.scalar(select(Booking.status).where(Booking.code == code)) == "confirmed"
    queue.enqueue(jobs.run_timed_work, tomorrow_at(10, 0).isoformat())
    setup.burst()
    db.session.rollback()
    assert db.session.scalar(select(Booking.status).where(Booking.code == code)) == "no_show"
    assert len(setup.lines()) == 2


def test_worker_needs_redis(app):
    result = app.test_cli_runner().invoke(args=["worker", "--burst"])
    assert result.exit_code == 1
    assert "REDIS_URL is not set" in result.output


def test_several_workers_at_once_send_each_message_once(client, make_slot, nik, setup):
    slot = make_slot(capacity=40, starts_in=30)  # within the reminder time: one kind each
    codes = [book(client, slot.id, nik(), f"0812{n:08d}").json["code"] for n in range(30)]
    # Every worker also runs the relay at start, which hands out the same notices again.
    workers = [
        subprocess.Popen(
            [str(VENV_BIN / "flask"), "worker", "--burst"],
            cwd=REPO,
            env=setup.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    sent = setup.lines()
    assert sorted(line["booking"] for line in sent) == sorted(codes)
    assert len({line["id"] for line in sent}) == len(sent) == 30
    db.session.rollback()
    statuses = db.session.scalars(select(Notice.status)).all()
    assert statuses == ["sent"] * 30

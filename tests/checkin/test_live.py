"""Live occupancy: events on Redis pub/sub after the commit, the SSE stream, the
fallback without Redis, the supervisor's overview and point pages, the CSV export."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import queue
import socket
import threading
import time
import uuid
from datetime import timedelta

import pytest
import redis as redis_lib
import sqlalchemy as sa

from checkin import live
from checkin.exports import safe_cell
from checkin.scanning import check_in
from common import events as events_module
from extensions import db


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


@pytest.fixture
def live_app(app, redis_url):
    """The app publishing on a channel of its own (pub/sub channels ignore the Redis
    database number, so parallel runs must not share one)."""
    saved = {key: app.config[key] for key in ("REDIS_URL", "LIVE_CHANNEL")}
    app.config.update(REDIS_URL=redis_url, LIVE_CHANNEL=f"antri-test:{uuid.uuid4().hex}")
    live.init_app(app)
    yield app
    app.config.update(saved)
    live.init_app(app)


@pytest.fixture
def channel(live_app, redis_url):
    """A subscription to the app's live channel: ``channel(point_id)`` returns the
    events for that point received so far (waiting up to 2 s for the first)."""
    client = redis_lib.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(live_app.config["LIVE_CHANNEL"])
    pubsub.get_message(timeout=1)  # the subscribe confirmation

    def received(point_id: int, wait: float = 2.0) -> list[dict]:
        events = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.2)
            if message is None:
                if events:
                    break
                continue
            event = json.loads(message["data"])
            if event["point_id"] == point_id:
                events.append(event)
        return events

    yield received
    pubsub.close()
    client.close()


def _book(client, slot, nik, phone="0812-3456-7890"):
    answer = client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Siti Aminah", "nik": nik, "phone": phone},
    )
    assert answer.status_code == 201, answer.json
    return answer.json


# Publishing ---------------------------------------------------------------------


def test_check_in_publishes_one_event_after_commit(client, make_slot, make_user, nik, channel):
    slot = make_slot(capacity=3, starts_in=-5)
    point = slot.market_point
    _, token = make_user("gate@antri.test", "staff", point)
    booked = _book(client, slot, nik())
    [booking_event] = channel(point.id)
    assert booking_event["kind"] == "booking"
    assert booking_event["slot_id"] == slot.id and booking_event["market_point"] == point.code

    answer = client.post(
        "/api/v1/checkin",
        json={"code": booked["code"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.json["result"] == "admitted"
    [event] = channel(point.id)
    assert event["kind"] == "check_in"
    assert event["market_point"] == point.code
    assert event["inside_now"] == 1 and event["safe_limit"] == point.safe_limit
    assert event["slot_id"] == slot.id and event["id"]
    # No personal data: no such fields, and neither the name nor the NIK digits as a value
    # (a substring check would trip on digits inside a timestamp).
    assert not {"name", "nik", "nik_last4", "phone"} & event.keys()
    assert "Siti" not in json.dumps(event) and booked["nik_last4"] not in map(str, event.values())

    again = client.post(
        "/api/v1/checkin",
        json={"code": booked["code"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert again.json["reason"] == "already_checked_in"
    [refused] = channel(point.id)
    assert refused["kind"] == "refused" and refused["reason"] == "already_checked_in"

    out = client.post(
        "/api/v1/checkout",
        json={"code": booked["code"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert out.json["result"] == "checked_out"
    [left] = channel(point.id)
    assert left["kind"] == "check_out" and left["inside_now"] == 0


def test_cancel_publishes_and_rolled_back_work_does_not(client, make_slot, make_user, nik, channel):
    slot = make_slot(capacity=3, starts_in=24 * 60)
    point = slot.market_point
    user, _ = make_user("gate@antri.test", "staff", point)
    booked = _book(client, slot, nik())
    assert [e["kind"] for e in channel(point.id)] == ["booking"]
    cancelled = client.post(
        f"/api/v1/bookings/{booked['code']}/cancel", json={"phone": "0812-3456-7890"}
    )
    assert cancelled.json["status"] == "cancelled"
    [event] = channel(point.id)
    assert event["kind"] == "cancellation" and event["slot_id"] == slot.id

    # A scan whose transaction rolls back is never told.
    check_in(booked["code"], point, db.session.get(type(user), user.id))
    db.session.rollback()
    assert channel(point.id, wait=1.0) == []


# The stream ---------------------------------------------------------------------


def _read_stream(response, out: queue.Queue, stop: threading.Event) -> None:
    """Put each SSE message (text) of a streamed test-client response on ``out``."""
    buffer = ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            message, buffer = buffer.split("\n\n", 1)
            out.put(message)
        if stop.is_set():
            return


def _data(message: str) -> dict | None:
    lines = [line[6:] for line in message.split("\n") if line.startswith("data: ")]
    return json.loads("\n".join(lines)) if lines else None


def test_stream_sends_snapshot_then_the_check_in(client, make_slot, make_user, nik, live_app):
    live_app.config["LIVE_HEARTBEAT_SECONDS"] = 1
    slot = make_slot(capacity=3, starts_in=-5)
    point = slot.market_point
    _, staff = make_user("gate@antri.test", "staff", point)
    _, boss = make_user("boss@antri.test", "supervisor")
    booked = _book(client, slot, nik())

    response = client.get(
        "/api/v1/occupancy/stream", headers={"Authorization": f"Bearer {boss}"}, buffered=False
    )
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["X-Accel-Buffering"] == "no"
    messages: queue.Queue = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=_read_stream, args=(response, messages, stop), daemon=True)
    reader.start()
    assert messages.get(timeout=5) == "retry: 2000"
    snapshot = _data(messages.get(timeout=5))
    assert snapshot["kind"] == "snapshot"
    [row] = [r for r in snapshot["points"] if r["market_point"]["code"] == point.code]
    assert row["inside_now"] == 0 and row["booked_today"] == 1

    sent = time.monotonic()
    client.post(
        "/api/v1/checkin",
        json={"code": booked["code"]},
        headers={"Authorization": f"Bearer {staff}"},
    )
    event = None
    while event is None:
        message = messages.get(timeout=5)
        if message.startswith(": keepalive"):
            continue
        assert message.startswith("id: ")
        candidate = _data(message)
        if candidate["point_id"] == point.id and candidate["kind"] == "check_in":
            event = candidate
    assert time.monotonic() - sent < 1.0
    assert event["inside_now"] == 1
    assert messages.get(timeout=3).startswith(": keepalive")  # heartbeat after 1 s quiet
    stop.set()
    reader.join(timeout=5)
    response.close()


def test_stream_needs_a_supervisor_or_the_staff_of_the_point(
    client, make_point, make_user, live_app
):
    point = make_point()
    other = make_point(code="JKT-901")
    _, staff = make_user("gate@antri.test", "staff", point)
    assert client.get("/api/v1/occupancy/stream").status_code == 401
    refused = client.get(
        f"/api/v1/occupancy/stream?market_point={other.code}",
        headers={"Authorization": f"Bearer {staff}"},
    )
    assert refused.status_code == 403
    unknown = client.get(
        "/api/v1/occupancy/stream?market_point=NOPE-1",
        headers={"Authorization": f"Bearer {staff}"},
    )
    assert unknown.status_code == 404


def test_without_redis_requests_stay_fast_and_the_stream_says_503(
    app, client, make_slot, make_user, nik
):
    saved = app.config["REDIS_URL"]
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{_closed_port()}/0"
    live.init_app(app)
    try:
        slot = make_slot(capacity=3, starts_in=-5)
        _, staff = make_user("gate@antri.test", "staff", slot.market_point)
        _, boss = make_user("boss@antri.test", "supervisor")
        for serial in range(2):
            began = time.monotonic()
            booked = _book(client, slot, nik())
            answer = client.post(
                "/api/v1/checkin",
                json={"code": booked["code"]},
                headers={"Authorization": f"Bearer {staff}"},
            )
            assert answer.status_code == 200 and answer.json["result"] == "admitted"
            assert answer.json["inside_now"] == serial + 1
            assert time.monotonic() - began < 1.0
        stream = client.get("/api/v1/occupancy/stream", headers={"Authorization": f"Bearer {boss}"})
        assert stream.status_code == 503 and stream.json["error"] == "live_unavailable"
        assert int(stream.headers["Retry-After"]) == app.config["LIVE_RETRY_SECONDS"]
        polled = client.get(
            "/api/v1/occupancy/overview", headers={"Authorization": f"Bearer {boss}"}
        )
        assert polled.status_code == 200
        [row] = [r for r in polled.json if r["market_point"]["id"] == slot.market_point_id]
        assert row["inside_now"] == 2 and row["checked_in_today"] == 2
    finally:
        app.config["REDIS_URL"] = saved
        live.init_app(app)
    unset = client.get("/api/v1/occupancy/stream", headers={"Authorization": f"Bearer {boss}"})
    assert unset.status_code == 503 and unset.json["error"] == "live_unavailable"
    assert "Retry-After" in unset.headers


# Pages --------------------------------------------------------------------------


def _login(client, email, password="correct-horse-1"):
    return client.post("/login", data={"email": email, "password": password})


def test_overview_filters_sorts_and_alerts(client, make_point, make_slot, make_user, nik):
    full = make_point(code="JKT-910", name="Pasar Penuh", safe_limit=1)
    make_point(code="JKT-911", name="Pasar Timur", city="Jakarta Timur", kecamatan="Matraman")
    slot = make_slot(capacity=3, starts_in=-5, point=full)
    _, staff = make_user("gate@antri.test", "staff", full)
    make_user("boss@antri.test", "supervisor")
    booked = _book(client, slot, nik())
    client.post(
        "/api/v1/checkin",
        json={"code": booked["code"]},
        headers={"Authorization": f"Bearer {staff}"},
    )
    _login(client, "boss@antri.test")

    page = client.get("/supervisor")
    assert page.status_code == 200
    assert page.text.index("Pasar Penuh") < page.text.index("Pasar Timur")  # fullest first
    assert 'data-alert="at_limit"' in page.text
    assert 'class="gauge full"' in page.text and 'data-inside="1">1 / 1<' in page.text
    assert 'data-poll="/api/v1/occupancy/overview"' in page.text
    assert "data-stream=" not in page.text  # no Redis: the page polls

    east = client.get("/supervisor?city=Jakarta+Timur")
    assert "Pasar Timur" in east.text and "Pasar Penuh" not in east.text
    senen = client.get("/supervisor?kecamatan=Senen&sort=name")
    assert "Pasar Penuh" in senen.text and "Pasar Timur" not in senen.text
    by_name = client.get("/supervisor?sort=name")
    assert by_name.text.index("Pasar Penuh") < by_name.text.index("Pasar Timur")
    assert client.get("/supervisor?sort=%3Cx%3E").status_code == 200

    polled = client.get("/api/v1/occupancy/overview")  # the page's session is enough
    [row] = [r for r in polled.json if r["market_point"]["code"] == "JKT-910"]
    assert row["level"] == "full" and row["alerts"] == ["at_limit"]
    assert row["booked_today"] == 1 and row["checked_in_today"] == 1


def test_point_page_slots_and_charts(client, make_point, make_slot, make_user, nik):
    point = make_point(code="JKT-920", safe_limit=10)
    slot = make_slot(capacity=4, starts_in=-5, point=point)
    _, staff = make_user("gate@antri.test", "staff", point)
    make_user("boss@antri.test", "supervisor")
    codes = [_book(client, slot, nik())["code"] for _ in range(3)]
    client.post(
        "/api/v1/checkin", json={"code": codes[0]}, headers={"Authorization": f"Bearer {staff}"}
    )
    _login(client, "boss@antri.test")
    page = client.get(f"/supervisor/points/{point.code}")
    assert page.status_code == 200
    row = page.text[page.text.index(f'data-slot-id="{slot.id}"') :]
    cells = [
        row.split(f'data-field="{field}">')[1].split("<")[0]
        for field in ("booked", "checked_in", "no_show", "remaining")
    ]
    assert cells == ["3", "1", "0", "1"]
    assert 'id="arrivals-chart"' in page.text and 'id="inside-chart"' in page.text
    assert "1 checked in" in page.text or "1 sudah masuk" in page.text
    assert f"market_point={point.code}" in page.text  # the download button
    assert client.get(f"/supervisor/points/{point.code}?date=2024-13-01").status_code == 400
    assert client.get("/supervisor/points/NOPE-1").status_code == 404
    other_day = client.get(f"/supervisor/points/{point.code}?date=2030-01-01")
    assert other_day.status_code == 200 and "data-live" not in other_day.text


# CSV export ---------------------------------------------------------------------


def test_csv_export_masks_nik_and_defuses_formulas(client, make_point, make_slot, make_user, nik):
    point = make_point(code="=JKT-930", name="=HYPERLINK(1)")
    slot = make_slot(capacity=4, starts_in=-5, point=point)
    _, staff = make_user("gate@antri.test", "staff", point)
    _, boss = make_user("boss@antri.test", "supervisor")
    first, second = nik(), nik()
    booked = [_book(client, slot, first), _book(client, slot, second, phone="081298765432")]
    client.post(
        "/api/v1/checkin",
        json={"code": booked[0]["code"]},
        headers={"Authorization": f"Bearer {staff}"},
    )
    day = slot.starts_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Jakarta")).date()
    answer = client.get(
        f"/api/v1/exports/bookings.csv?date={day}&market_point=%3DJKT-930",
        headers={"Authorization": f"Bearer {boss}"},
    )
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"].startswith("attachment; filename=")
    assert answer.data.startswith(b"\xef\xbb\xbf")
    text = answer.data.decode("utf-8-sig")
    assert "\r\n" in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["booking_code"] for r in rows] == sorted(b["code"] for b in booked)
    by_code = {r["booking_code"]: r for r in rows}
    admitted = by_code[booked[0]["code"]]
    assert admitted["nik"] == f"****{first[-4:]}"
    assert admitted["status"] == "checked_in" and admitted["checked_in_at"].startswith(str(day))
    assert admitted["market_point"] == "'=JKT-930"  # never a formula
    assert by_code[booked[1]["code"]]["checked_in_at"] == ""
    assert first not in text and second not in text
    assert "Siti" not in text and "81234567890" not in text and "HYPERLINK" not in text


def test_csv_export_auth_and_bad_input(client, make_point, make_user):
    point = make_point()
    other = make_point(code="JKT-931")
    _, staff = make_user("gate@antri.test", "staff", point)
    _, boss = make_user("boss@antri.test", "supervisor")
    url = "/api/v1/exports/bookings.csv?date=2025-03-01"
    assert client.get(url).status_code == 401
    assert client.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    staff_auth = {"Authorization": f"Bearer {staff}"}
    own = client.get(url + f"&market_point={point.code}", headers=staff_auth)
    assert own.status_code == 200 and own.data.decode("utf-8-sig").startswith("booking_code,")
    assert client.get(url + f"&market_point={other.code}", headers=staff_auth).status_code == 403
    boss_auth = {"Authorization": f"Bearer {boss}"}
    for bad in ("2025-02-30", "01-03-2025", "yesterday", "9999-01-01", "2025-3-1"):
        answer = client.get(f"/api/v1/exports/bookings.csv?date={bad}", headers=boss_auth)
        assert answer.status_code == 422 and answer.json["error"] == "invalid_date", bad
    unknown = client.get(url + "&market_point=NOPE-1", headers=boss_auth)
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=1+1", "'=1+1"),
        ("+62812", "'+62812"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Pasar Senen", "Pasar Senen"),
        ("", ""),
    ],
)
def test_safe_cell(cell, safe):
    assert safe_cell(cell) == safe


# Issue 6, second round: caps, robustness, every change published ------------------


class SwitchProxy:
    """A TCP forwarder to a real Redis with three modes: ``up`` (forward), ``down``
    (cut every link and refuse new ones, like a stopped server) and ``blackhole``
    (accept and swallow everything, answer nothing, like a dead network path)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "up"
        self._links: list[socket.socket] = []
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(32)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.mode == "up":
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.mode == "down":
                client.close()
                continue
            self._links = [link for link in self._links if link.fileno() != -1]
            upstream = socket.create_connection(self.target)
            self._links += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def set(self, mode: str) -> None:
        self.mode = mode
        if mode == "down":
            for link in self._links:
                with contextlib.suppress(OSError):
                    link.shutdown(socket.SHUT_RDWR)
                link.close()
            self._links = []

    def close(self) -> None:
        self.set("down")
        self._server.close()


@pytest.fixture
def proxy(redis_url):
    """A SwitchProxy in front of the test Redis; yields (proxy, the Redis URL through it)."""
    parsed = redis_lib.connection.parse_url(redis_url)
    switch = SwitchProxy((parsed.get("host", "127.0.0.1"), parsed.get("port", 6379)))
    yield switch, switch.url(parsed.get("db", 0))
    switch.close()


def _listener(redis_url: str, channel: str):
    client = redis_lib.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1)
    return client, pubsub


def _next_event(pubsub, wait: float) -> dict | None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            return json.loads(message["data"])
    return None


def test_stream_caps_per_account_and_process_answer_503_with_retry_after(
    client, make_point, make_user, live_app
):
    live_app.config.update(LIVE_MAX_STREAMS_PER_PROCESS=3, LIVE_MAX_STREAMS_PER_USER=2)
    make_point()
    _, first = make_user("boss@antri.test", "supervisor")
    _, second = make_user("boss2@antri.test", "supervisor")
    _, third = make_user("boss3@antri.test", "supervisor")
    opened = []

    def open_stream(token):
        response = client.get(
            "/api/v1/occupancy/stream",
            headers={"Authorization": f"Bearer {token}"},
            buffered=False,
        )
        opened.append(response)
        return response

    try:
        assert [open_stream(first).status_code for _ in range(2)] == [200, 200]
        refused = open_stream(first)  # a third of one account
        assert refused.status_code == 503 and refused.json["error"] == "live_unavailable"
        assert int(refused.headers["Retry-After"]) >= 5
        assert open_stream(second).status_code == 200  # another account: fine
        full = open_stream(third)  # but the process holds 3 now
        assert full.status_code == 503 and "Retry-After" in full.headers
        assert live_app.extensions[live.HUB].streams == 3
        opened[0].close()  # a stream that ends gives its place back
        assert open_stream(third).status_code == 200
    finally:
        for response in opened:
            response.close()


def test_overview_of_one_point_carries_its_slot_rows(client, make_slot, make_user, nik):
    slot = make_slot(capacity=1, starts_in=-5)
    point = slot.market_point
    _, boss = make_user("boss@antri.test", "supervisor")
    _book(client, slot, nik())
    waiting = client.post(
        f"/api/v1/slots/{slot.id}/waiting-list",
        json={"name": "Siti Aminah", "nik": nik(), "phone": "0812-9999-0000"},
    )
    assert waiting.status_code == 201, waiting.json
    answer = client.get(
        f"/api/v1/occupancy/overview?market_point={point.code}",
        headers={"Authorization": f"Bearer {boss}"},
    )
    [row] = answer.json
    assert row["booked_today"] == 1 and row["waiting_today"] == 1
    [slot_row] = row["slots"]
    assert slot_row["id"] == slot.id
    assert (slot_row["capacity"], slot_row["booked"], slot_row["remaining"]) == (1, 1, 0)
    assert (slot_row["checked_in"], slot_row["no_show"], slot_row["waiting"]) == (0, 0, 1)


def test_waiting_list_no_shows_releases_and_closures_are_published(
    app, client, make_slot, nik, channel
):
    from common.audit import CLI
    from common.timeutil import utcnow
    from slots.booking import book_slot
    from slots.housekeeping import expire_past_slots, release_late_arrivals
    from slots.models import Booking
    from slots.staff import close_slot

    grace = app.config["NO_SHOW_GRACE_MINUTES"]
    slot = make_slot(capacity=1, starts_in=-(grace + 5), minutes=grace + 30)
    point = slot.market_point
    late = _book(client, slot, nik())
    # Made before the grace ran out: the release counts from when it was made.
    db.session.execute(
        sa.update(Booking)
        .where(Booking.code == late["code"])
        .values(created_at=utcnow() - timedelta(minutes=grace + 5))
    )
    db.session.commit()
    assert [e["kind"] for e in channel(point.id)] == ["booking"]

    joined = client.post(
        f"/api/v1/slots/{slot.id}/waiting-list",
        json={"name": "Siti Aminah", "nik": nik(), "phone": "0812-9999-0001"},
    )
    assert joined.status_code == 201, joined.json
    [event] = channel(point.id)
    assert (event["kind"], event["action"], event["slot_id"]) == ("waiting_list", "joined", slot.id)
    assert not {"name", "nik", "phone", "code"} & event.keys()

    assert release_late_arrivals() == 1
    db.session.commit()
    # The late booking released (no_show), the waiting resident promoted (booking).
    assert sorted(e["kind"] for e in channel(point.id)) == ["booking", "no_show"]

    ended = make_slot(capacity=2, starts_in=-200, minutes=30, point=point)
    book_slot(ended.id, "Budi Santoso", nik(), "0812-9999-0002", now=ended.starts_at)
    db.session.commit()
    channel(point.id, wait=0.5)
    marked, _ = expire_past_slots()
    db.session.commit()
    assert marked == 1
    assert [(e["kind"], e["slot_id"]) for e in channel(point.id)] == [("no_show", ended.id)]

    later = make_slot(capacity=2, starts_in=120, point=point)
    close_slot(later.id, CLI)
    db.session.commit()
    assert [(e["kind"], e["slot_id"]) for e in channel(point.id)] == [("slot_closed", later.id)]


def test_check_out_counts_inside_under_the_point_lock(app, backend, make_slot, make_user, nik):
    """A check-out still open while a check-in runs: the check-in waits for the point's
    lock, so each event's inside_now is the count once its own transaction commits.
    (Without the lock in check_out the check-in counted the leaving visitor: 3, not 2.)"""
    if backend != "postgresql":
        pytest.skip("SQLite serialises every writer anyway")
    from accounts.models import User
    from checkin.scanning import check_out
    from slots.booking import book_slot

    slot = make_slot(capacity=5, starts_in=-5)
    point = slot.market_point
    staff, _ = make_user("gate@antri.test", "staff", point)
    codes = [book_slot(slot.id, "Budi Santoso", nik(), "0812-3456-7890").code for _ in range(3)]
    db.session.commit()
    for code in codes[:2]:
        check_in(code, point, db.session.get(User, staff.id))
    db.session.commit()
    published: list[dict] = []
    app.extensions[events_module.PUBLISHER] = published.extend
    try:
        leaving = check_out(codes[0], point, db.session.get(User, staff.id))
        assert leaving.result == "checked_out"  # not committed yet: holds the lock

        def arrive() -> None:
            with app.app_context():
                check_in(
                    codes[2], db.session.get(type(point), point.id), db.session.get(User, staff.id)
                )
                db.session.commit()

        arrival = threading.Thread(target=arrive)
        arrival.start()
        arrival.join(timeout=1.0)
        assert arrival.is_alive()  # waiting for the point's lock
        db.session.commit()
        arrival.join(timeout=10)
        assert not arrival.is_alive()
    finally:
        app.extensions.pop(events_module.PUBLISHER, None)
    assert [(e["kind"], e["inside_now"]) for e in published] == [("check_out", 1), ("check_in", 2)]


def test_publisher_keeps_events_while_redis_is_away(proxy, redis_url):
    switch, through = proxy
    channel = f"antri-test:{uuid.uuid4().hex}"
    client, pubsub = _listener(redis_url, channel)
    publisher = live.RedisPublisher(through, channel, retry_seconds=1)
    try:
        publisher([{"kind": "check_in", "point_id": 1}])
        assert _next_event(pubsub, 2)["kind"] == "check_in"
        switch.set("down")
        began = time.monotonic()
        publisher([{"kind": "check_out", "point_id": 1}])  # fails: kept
        publisher([{"kind": "booking", "point_id": 1}])  # in the pause: kept, not tried
        assert time.monotonic() - began < 1.0 and publisher.pending == 2
        switch.set("up")
        # Published by the retry timer, in order, though nothing else is published.
        # (At least once: a publish cut mid-way may have reached Redis and comes again.)
        seen = _kinds_until(pubsub, "booking", 3)
        assert seen[-2:] == ["check_out", "booking"] and set(seen) == {"check_out", "booking"}
        assert publisher.pending == 0
        # The hub's "subscribed again" publishes at once, without waiting for the timer.
        publisher.retry_seconds = 60
        switch.set("down")
        publisher([{"kind": "cancellation", "point_id": 1}])
        switch.set("up")
        publisher.redis_is_back()
        assert _kinds_until(pubsub, "cancellation", 1)[-1] == "cancellation"
    finally:
        pubsub.close()
        client.close()


def _kinds_until(pubsub, kind: str, seconds: float) -> list[str]:
    """The kinds of the events received until one of ``kind`` (within ``seconds``)."""
    kinds: list[str] = []
    deadline = time.monotonic() + seconds
    while not kinds or kinds[-1] != kind:
        kinds.append(_next_event(pubsub, max(deadline - time.monotonic(), 0.05))["kind"])
    return kinds


def _hub_with_stream(url: str, channel: str, **timing):
    hub = live.Hub(url, channel, **timing)
    assert hub.ensure_running(wait=3)
    return hub, hub.subscribe("test")


def test_hub_notices_a_silent_redis_and_comes_back(proxy, redis_url):
    switch, through = proxy
    channel = f"antri-test:{uuid.uuid4().hex}"
    hub, q = _hub_with_stream(through, channel, ping_seconds=0.5, silence_limit=2.0)
    switch.set("blackhole")  # accepts and swallows, never answers, never resets
    began = time.monotonic()
    assert q.get(timeout=10) is live._END  # the open stream is ended ...
    assert time.monotonic() - began < 5
    assert not hub.connected.is_set()  # ... and new streams are refused (503)
    assert not hub.ensure_running(wait=0.5)
    switch.set("up")
    assert hub.connected.wait(10)
    again = hub.subscribe("test")
    redis_lib.Redis.from_url(redis_url).publish(channel, json.dumps({"point_id": 1, "id": "x"}))
    assert again.get(timeout=3)[1]["id"] == "x"


def test_hub_survives_a_malformed_message(redis_url):
    channel = f"antri-test:{uuid.uuid4().hex}"
    hub, q = _hub_with_stream(redis_url, channel)
    sender = redis_lib.Redis.from_url(redis_url)
    sender.publish(channel, json.dumps({"kind": "x", "point_id": 3}).encode("utf-16"))
    sender.publish(channel, b"\xff\xfe not json")
    sender.publish(channel, b"[1, 2]")
    sender.publish(channel, json.dumps({"kind": "check_in", "point_id": 3, "id": "ok"}))
    assert q.get(timeout=3)[1]["id"] == "ok"
    assert hub._thread.is_alive() and hub.connected.is_set()


def _open_stream(client, headers):
    response = client.get("/api/v1/occupancy/stream", headers=headers, buffered=False)
    assert response.status_code == 200
    messages: queue.Queue = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=_stream_until_end, args=(response, messages), daemon=True)
    reader.start()
    return response, messages, stop


def _stream_until_end(response, out: queue.Queue) -> None:
    _read_stream(response, out, threading.Event())
    out.put("EOF")


def _ends_within(messages: queue.Queue, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if messages.get(timeout=0.2) == "EOF":
                return True
        except queue.Empty:
            continue
    return False


def test_stream_ends_when_its_token_is_revoked_or_account_disabled(
    client, make_point, make_user, live_app
):
    from accounts.models import User
    from accounts.service import revoke_token

    live_app.config["LIVE_HEARTBEAT_SECONDS"] = 1
    make_point()
    _, token = make_user("boss@antri.test", "supervisor")
    boss2, token2 = make_user("boss2@antri.test", "supervisor")
    response, messages, _ = _open_stream(client, {"Authorization": f"Bearer {token}"})
    other, other_messages, _ = _open_stream(client, {"Authorization": f"Bearer {token2}"})
    try:
        assert not _ends_within(messages, 1.5)  # a valid token keeps its stream
        revoke_token(token)
        db.session.commit()
        assert _ends_within(messages, 4)
        db.session.get(User, boss2.id).active = False
        db.session.commit()
        assert _ends_within(other_messages, 4)
        assert (
            client.get(
                "/api/v1/occupancy/stream", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 401
        )
    finally:
        response.close()
        other.close()


def test_inside_chart_stops_at_now(ctx, make_slot, make_user, nik):
    from accounts.models import User
    from checkin import charts
    from checkin.occupancy import point_day
    from common.timeutil import local_date, utcnow
    from slots.booking import book_slot

    slot = make_slot(capacity=3, starts_in=-30, minutes=60)
    point = slot.market_point
    staff, _ = make_user("gate@antri.test", "staff", point)
    code = book_slot(slot.id, "Budi Santoso", nik(), "0812-3456-7890").code
    db.session.commit()
    check_in(code, point, db.session.get(User, staff.id))
    db.session.commit()
    now = utcnow()
    day = point_day(point, local_date(now, point.timezone), now)
    assert day.end > now
    chart = charts.inside_chart(day)
    last_x = float(chart.path.split(" L")[-1].split(",")[0])
    span = (day.end - day.start).total_seconds()
    at_now = charts.LEFT + (charts.WIDTH - charts.LEFT - charts.RIGHT) * (
        (now - day.start).total_seconds() / span
    )
    assert abs(last_x - at_now) < 1.0  # the line ends now, not at the end of the day
    tomorrow = point_day(point, local_date(now, point.timezone) + timedelta(days=1), now)
    assert charts.inside_chart(tomorrow).path == ""  # nothing drawn for a day to come

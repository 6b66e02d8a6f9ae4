"""The gate's rules the issue adds: nonces, when-and-by-whom, undo, the safe-limit CLI,
offline snapshots and merges with conflicts, and the first-scan-wins race through a
real multi-process server on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from checkin.models import GateConflict, Scan
from common.timeutil import utcnow
from extensions import db
from slots.models import Booking, Slot
from tests.clock import tomorrow_at
from tests.servers import gunicorn, post_json


@pytest.fixture
def gate(client, make_slot, make_user, nik):
    """A running slot at a point, a staff token there, helpers to book and scan."""
    slot = make_slot(capacity=20, starts_in=-5, minutes=30)
    _, token = make_user("gate@antri.test", "staff", slot.market_point)

    class Gate:
        point = slot.market_point
        point_code = slot.market_point.code
        slot_id = slot.id
        headers = {"Authorization": f"Bearer {token}"}
        token_text = token

        @staticmethod
        def book(slot_id=slot.id):
            response = client.post(
                "/api/v1/bookings",
                json={"slot_id": slot_id, "name": "Rina", "nik": nik(), "phone": "081234567890"},
            )
            assert response.status_code == 201, response.json
            return response.json

        @classmethod
        def scan(cls, path="/api/v1/checkin", headers=None, **body):
            return client.post(path, json=body, headers=headers or cls.headers)

    return Gate


def _cancel(code: str) -> None:
    """Cancel a booking as the market would (a running slot is past the residents'
    cancel cut-off, so the API would refuse them)."""
    db.session.execute(
        update(Booking)
        .where(Booking.code == code)
        .values(status="cancelled", cancelled_at=utcnow())
    )
    db.session.commit()


def _told_to_come_at_start(*bookings: dict) -> None:
    """Give ``bookings`` (booking answers) the slot's first arrival wave, as if booked
    before the slot began: a booking made while its slot runs gets a wave that has not
    begun (issue 15), and the offline scans of these tests are stamped minutes before
    the bookings were made."""
    db.session.execute(
        update(Booking)
        .where(Booking.code.in_([b["code"] for b in bookings]))
        .values(
            arrive_at=select(Slot.starts_at).where(Slot.id == Booking.slot_id).scalar_subquery()
        )
    )
    db.session.commit()


def _scans() -> list[tuple]:
    return db.session.execute(
        select(Scan.direction, Scan.result, Scan.reason, Scan.device).order_by(Scan.id)
    ).all()


def test_same_nonce_from_same_device_answers_once(gate):
    booking = gate.book()
    first = gate.scan(ticket=booking["ticket"], device="gate-1", nonce="n-0001").json
    again = gate.scan(ticket=booking["ticket"], device="gate-1", nonce="n-0001").json
    assert (first["result"], first["replayed"]) == ("admitted", False)
    assert (again["result"], again["reason"], again["replayed"]) == ("admitted", None, True)
    assert again["inside_now"] == 1
    # Another nonce is another scan: the ticket is used up.
    other = gate.scan(ticket=booking["ticket"], device="gate-1", nonce="n-0002").json
    assert (other["result"], other["reason"]) == ("refused", "already_checked_in")
    # The same nonce from another device is that device's own scan.
    elsewhere = gate.scan(ticket=booking["ticket"], device="gate-2", nonce="n-0001").json
    assert (elsewhere["reason"], elsewhere["replayed"]) == ("already_checked_in", False)
    assert _scans() == [
        ("in", "admitted", "", "gate-1"),
        ("in", "refused", "already_checked_in", "gate-1"),
        ("in", "refused", "already_checked_in", "gate-2"),
    ]
    # A refusal replays as the same refusal.
    replayed = gate.scan(ticket=booking["ticket"], device="gate-1", nonce="n-0002").json
    assert (replayed["reason"], replayed["replayed"]) == ("already_checked_in", True)
    assert len(_scans()) == 3


def test_checkout_nonce_is_idempotent(gate):
    booking = gate.book()
    gate.scan(code=booking["code"])
    body = {"code": booking["code"], "device": "exit", "nonce": "out-1"}
    first = gate.scan("/api/v1/checkout", **body).json
    again = gate.scan("/api/v1/checkout", **body).json
    assert first["result"] == again["result"] == "checked_out"
    assert again["replayed"] is True
    assert [row[:2] for row in _scans()] == [("in", "admitted"), ("out", "admitted")]


@pytest.mark.parametrize(
    "nonce", ["", "x" * 65, "has space", "ümlaut", 12, ["n"], {"n": 1}, "semi;colon"]
)
def test_bad_nonces_are_422(gate, nonce):
    booking = gate.book()
    response = gate.scan(code=booking["code"], nonce=nonce)
    assert response.status_code == 422 and response.json["error"] == "invalid_nonce"
    assert _scans() == []


def test_already_checked_in_says_when_and_by_whom(gate):
    booking = gate.book()
    gate.scan(code=booking["code"])
    refused = gate.scan(ticket=booking["ticket"]).json
    assert refused["reason"] == "already_checked_in"
    assert refused["details"]["checked_in_by"] == "gate@antri.test"
    at = refused["details"]["checked_in_at"]
    row = db.session.scalar(select(Booking).where(Booking.code == booking["code"]))
    assert at == row.checked_in_at.isoformat()
    local = row.checked_in_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Jakarta"))
    assert local.strftime("%H:%M") in refused["message"]
    assert "gate@antri.test" in refused["message"]


def test_no_show_and_not_today_reasons(gate):
    from accounts.models import User
    from checkin.scanning import check_in

    booking, later = gate.book(), gate.book()
    db.session.execute(
        update(Booking).where(Booking.code == booking["code"]).values(status="no_show")
    )
    db.session.commit()
    assert gate.scan(code=booking["code"]).json["reason"] == "no_show"
    row = db.session.scalar(select(Booking).where(Booking.code == later["code"]))
    user = db.session.scalar(select(User).where(User.email == "gate@antri.test"))
    slot_day = row.slot.starts_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Jakarta"))
    # A day before: the booking is for another day. A day after: they missed it
    # (too_late, with the date it ended; issue 14 item 6a).
    day_before = check_in(later["ticket"], gate.point, user, row.slot.starts_at - timedelta(days=1))
    assert (day_before.result, day_before.reason) == ("refused", "not_today")
    assert slot_day.strftime("%d-%m-%Y") in day_before.message
    next_day = check_in(later["ticket"], gate.point, user, row.slot.starts_at + timedelta(days=1))
    assert (next_day.result, next_day.reason) == ("refused", "too_late")
    slot_end = row.slot.ends_at.astimezone(slot_day.tzinfo)
    assert slot_end.strftime("%H:%M") in next_day.message
    db.session.commit()


def test_window_edges_follow_the_settings(app, gate, make_slot):
    from accounts.models import User
    from checkin.scanning import check_in

    # A slot at 10:00 WIB tomorrow: its late edge is the same local day at any hour.
    booking = gate.book(make_slot(capacity=2, starts_in=0, now=tomorrow_at(10)).id)
    row = db.session.scalar(select(Booking).where(Booking.code == booking["code"]))
    user = db.session.scalar(select(User).where(User.email == "gate@antri.test"))
    start, end = row.slot.starts_at, row.slot.ends_at
    app.config.update(CHECKIN_EARLY_MINUTES=5, CHECKIN_LATE_MINUTES=10)
    try:
        assert check_in(row.code, gate.point, user, start - timedelta(minutes=6)).reason == (
            "too_early"
        )
        assert check_in(row.code, gate.point, user, end + timedelta(minutes=11)).reason == (
            "too_late"
        )
        at_close = check_in(row.code, gate.point, user, end + timedelta(minutes=10))
        assert at_close.result == "admitted"
    finally:
        app.config.update(CHECKIN_EARLY_MINUTES=15, CHECKIN_LATE_MINUTES=30)
    db.session.commit()


def test_supervisor_undoes_a_check_in_and_staff_cannot(gate, client, make_user):
    booking = gate.book()
    gate.scan(code=booking["code"])
    staff = client.post(f"/api/v1/checkins/{booking['code']}/undo", headers=gate.headers)
    assert staff.status_code == 403
    _, boss = make_user("boss@antri.test", "supervisor")
    boss_headers = {"Authorization": f"Bearer {boss}"}
    undone = client.post(f"/api/v1/checkins/{booking['code']}/undo", headers=boss_headers)
    assert undone.status_code == 200, undone.json
    assert (undone.json["result"], undone.json["booking"]["status"]) == ("undone", "confirmed")
    assert undone.json["inside_now"] == 0
    row = db.session.scalar(select(Booking).where(Booking.code == booking["code"]))
    db.session.refresh(row)
    assert (row.status, row.checked_in_at) == ("confirmed", None)
    from common.audit import AuditEntry

    entry = db.session.scalar(select(AuditEntry))
    assert (entry.action, entry.actor, entry.target_id) == (
        "checkin.undo",
        "boss@antri.test",
        booking["code"],
    )
    twice = client.post(f"/api/v1/checkins/{booking['code']}/undo", headers=boss_headers)
    assert twice.status_code == 409 and twice.json["error"] == "not_checked_in"
    unknown = client.post("/api/v1/checkins/ACDEFGHJ/undo", headers=boss_headers)
    assert unknown.status_code == 404
    # The ticket admits again; "already checked in" names the newest admission.
    assert gate.scan(ticket=booking["ticket"]).json["result"] == "admitted"
    assert [row[:2] for row in _scans()] == [
        ("in", "admitted"),
        ("in", "undone"),
        ("in", "admitted"),
    ]


def test_points_update_sets_the_safe_limit(ctx, gate):
    runner = ctx.test_cli_runner()
    done = runner.invoke(args=["points", "update", gate.point_code, "--safe-limit", "1"])
    assert done.exit_code == 0, done.output
    assert "safe limit 40 -> 1" in done.output
    db.session.refresh(gate.point)
    assert gate.point.safe_limit == 1
    first, second = gate.book(), gate.book()
    assert gate.scan(code=first["code"]).json["result"] == "admitted"
    wait = gate.scan(code=second["code"]).json
    assert (wait["result"], wait["reason"], wait["details"]) == (
        "wait",
        "point_full",
        {"inside": 1, "limit": 1},
    )
    assert runner.invoke(args=["points", "update", gate.point_code, "--safe-limit", "0"]).exit_code
    assert runner.invoke(args=["points", "update", "NOPE", "--safe-limit", "3"]).exit_code


def test_visits_end_after_the_dwell_time(app, gate):
    from accounts.models import User
    from checkin.occupancy import inside_now
    from checkin.scanning import check_in

    booking = gate.book()
    user = db.session.scalar(select(User).where(User.email == "gate@antri.test"))
    now = utcnow()
    check_in(booking["code"], gate.point, user, now)
    db.session.commit()
    assert inside_now([gate.point.id], now + timedelta(minutes=59))[gate.point.id] == 1
    assert inside_now([gate.point.id], now + timedelta(minutes=61))[gate.point.id] == 0


# Offline gates ------------------------------------------------------------------


def test_sync_snapshot_has_keys_rules_and_bookings(gate, client, make_point, make_user):
    confirmed, cancelled = gate.book(), gate.book()
    _cancel(cancelled["code"])
    snap = client.get("/api/v1/gate/sync", headers=gate.headers)
    assert snap.status_code == 200 and snap.headers["Cache-Control"] == "no-store"
    body = snap.json
    assert body["market_point"]["code"] == gate.point_code
    assert (body["checkin_early_minutes"], body["checkin_late_minutes"]) == (15, 30)
    assert body["keys"] and body["keys"][0]["alg"] == "Ed25519"
    by_code = {b["code"]: b for b in body["bookings"]}
    assert by_code[confirmed["code"]]["status"] == "confirmed"
    assert by_code[cancelled["code"]]["status"] == "cancelled"
    assert body["cancelled"] == [by_code[cancelled["code"]]["id"]]
    assert "name" not in by_code[confirmed["code"]] and "phone" not in by_code[confirmed["code"]]

    elsewhere = make_point(code="JKT-955")
    forbidden = client.get("/api/v1/gate/sync?market_point=JKT-955", headers=gate.headers)
    assert forbidden.status_code == 403
    _, boss = make_user("boss@antri.test", "supervisor")
    boss_headers = {"Authorization": f"Bearer {boss}"}
    assert client.get("/api/v1/gate/sync", headers=boss_headers).status_code == 422
    other = client.get(f"/api/v1/gate/sync?market_point={elsewhere.code}", headers=boss_headers)
    assert other.status_code == 200 and other.json["bookings"] == []
    assert client.get("/api/v1/gate/sync").status_code == 401


def _offline(nonce, scanned, minutes_ago=1, **extra):
    at = (utcnow() - timedelta(minutes=minutes_ago)).isoformat()
    return {"nonce": nonce, "scanned_at": at, "ticket": scanned, "direction": "in",
            "local_result": "admitted", **extra}  # fmt: skip


def test_offline_scans_merge_first_scan_wins_and_flag_conflicts(gate, client, make_user):
    kept, cancelled, twice, walked_out = gate.book(), gate.book(), gate.book(), gate.book()
    _told_to_come_at_start(kept, cancelled, twice, walked_out)
    # After the device's last sync: one booking is cancelled, another admitted online.
    _cancel(cancelled["code"])
    assert gate.scan(code=twice["code"], device="gate-online").json["result"] == "admitted"
    batch = {
        "device": "gate-offline",
        "scans": [
            _offline("o-3", walked_out["code"], 1, direction="out", local_result="checked_out"),
            _offline("o-1", kept["ticket"], 4),
            _offline("o-2", cancelled["ticket"], 3),
            _offline("o-4", twice["ticket"], 2),
            _offline("o-5", walked_out["ticket"], 5),
            _offline(
                "o-6", kept["ticket"], 1, local_result="refused", local_reason="already_checked_in"
            ),  # fmt: skip
        ],
    }
    synced = client.post("/api/v1/checkin/sync", json=batch, headers=gate.headers)
    assert synced.status_code == 200, synced.json
    results = {r["nonce"]: r for r in synced.json["results"]}
    assert [r["nonce"] for r in synced.json["results"]] == [
        "o-3",
        "o-1",
        "o-2",
        "o-4",
        "o-5",
        "o-6",
    ]
    assert (results["o-1"]["result"], results["o-1"]["conflict"]) == ("admitted", None)
    assert (results["o-2"]["result"], results["o-2"]["conflict"]) == ("refused", "cancelled")
    assert results["o-4"]["conflict"] == "already_checked_in"
    # Applied in scanned_at order: o-5 (in) before o-3 (out).
    assert results["o-5"]["result"] == "admitted"
    assert results["o-3"]["result"] == "checked_out"
    assert (results["o-6"]["result"], results["o-6"]["reason"]) == ("refused", "already_checked_in")
    # kept and twice, and the two the offline gate let in against the server's rules
    # (cancelled, and twice's second admission; issue 14 item 4); walked_out has left.
    assert synced.json["inside_now"] == 4

    rows = db.session.execute(select(Booking.code, Booking.status, Booking.checked_in_at)).all()
    status = {code: s for code, s, _ in rows}
    assert status[kept["code"]] == "checked_in" and status[walked_out["code"]] == "checked_out"
    kept_at = next(at for code, _, at in rows if code == kept["code"])
    assert abs((utcnow() - kept_at) - timedelta(minutes=4)) < timedelta(seconds=30)
    found = db.session.execute(
        select(GateConflict.kind, Booking.code).join(Booking, GateConflict.booking_id == Booking.id)
    ).all()
    assert sorted(found) == sorted(
        [("cancelled", cancelled["code"]), ("already_checked_in", twice["code"])]
    )
    offline_rows = db.session.scalars(select(Scan).where(Scan.device == "gate-offline")).all()
    assert len(offline_rows) == 6 and all(s.synced_at is not None for s in offline_rows)

    # The same batch again changes nothing and answers the same.
    again = client.post("/api/v1/checkin/sync", json=batch, headers=gate.headers).json
    assert all(r["replayed"] for r in again["results"])
    assert {r["nonce"]: r["conflict"] for r in again["results"]}["o-2"] == "cancelled"
    assert db.session.scalar(select(func.count(Scan.id))) == 7
    assert db.session.scalar(select(func.count(GateConflict.id))) == 2

    overview = client.get(
        f"/api/v1/occupancy/overview?market_point={gate.point_code}", headers=gate.headers
    ).json[0]
    assert overview["gate_conflicts"] == 2 and "gate_conflicts" in overview["alerts"]

    # The supervisor sees them on the point's page and marks one as dealt with.
    from common.audit import AuditEntry
    from tests.admin.test_admin import login

    make_user("boss-conflicts@antri.test", "supervisor")
    login(client, "boss-conflicts@antri.test")
    page = client.get(f"/supervisor/points/{gate.point_code}")
    assert page.status_code == 200 and 'id="conflicts"' in page.text
    assert page.text.count("Tandai sudah ditangani") == 2
    first = db.session.scalar(select(GateConflict).order_by(GateConflict.id))
    done = client.post(f"/supervisor/conflicts/{first.id}/resolve", follow_redirects=True)
    assert done.status_code == 200 and done.text.count("Tandai sudah ditangani") == 1
    db.session.refresh(first)
    assert first.resolved_at is not None
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "conflict.resolve"))
    assert entry.actor == "boss-conflicts@antri.test" and entry.target_id == str(first.id)
    overview = client.get(f"/api/v1/occupancy/overview?market_point={gate.point_code}").json[0]
    assert overview["gate_conflicts"] == 1


def test_offline_admission_ignores_a_full_point(gate, client):
    gate.point.safe_limit = 1
    db.session.commit()
    first, second = gate.book(), gate.book()
    _told_to_come_at_start(first, second)
    gate.scan(code=first["code"])
    body = {"device": "g", "scans": [_offline("x-1", second["ticket"], 1)]}
    result = client.post("/api/v1/checkin/sync", json=body, headers=gate.headers).json
    assert (result["results"][0]["result"], result["inside_now"]) == ("admitted", 2)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([], "invalid_json"),
        ({"scans": "nope"}, "invalid_scans"),
        ({"scans": [1]}, "invalid_scans"),
        ({"scans": [{"ticket": "X", "scanned_at": "2026-01-01T00:00:00+00:00"}]}, "invalid_nonce"),
        ({"scans": [{"nonce": "a b", "ticket": "X"}]}, "invalid_nonce"),
        ({"scans": [{"nonce": "a", "ticket": "X", "direction": "up",
                     "scanned_at": "2026-01-01T00:00:00+00:00"}]}, "invalid_scans"),
        ({"scans": [{"nonce": "a", "ticket": "X", "local_result": "maybe",
                     "scanned_at": "2026-01-01T00:00:00+00:00"}]}, "invalid_scans"),
        ({"scans": [{"nonce": "a"}] * 501}, "batch_too_large"),
        ({"scans": [], "device": 5}, "invalid_device"),
    ],
)  # fmt: skip
def test_malformed_sync_payloads_are_422(gate, client, body, code):
    response = client.post("/api/v1/checkin/sync", json=body, headers=gate.headers)
    assert response.status_code == 422, response.json
    assert response.json["error"] == code
    assert _scans() == []


def test_one_bad_item_does_not_lose_the_rest_of_a_batch(gate, client):
    good, long_one = gate.book(), gate.book()
    at = (utcnow() - timedelta(minutes=3)).isoformat()
    batch = {
        "device": "gate-offline",
        "scans": [
            _offline("ok", good["ticket"], 3),
            {"nonce": "no-text", "scanned_at": at},
            {"nonce": "words", "ticket": "X", "scanned_at": "yesterday"},
            {"nonce": "naive", "ticket": "X", "scanned_at": "2026-01-01T00:00:00"},
            {"nonce": "old", "ticket": "X", "scanned_at": "1999-01-01T00:00:00+00:00"},
            {"nonce": "far", "ticket": "X", "scanned_at": "9999-12-31T23:59:59-14:00"},
            {"nonce": "first", "ticket": "X", "scanned_at": "0001-01-01T00:00:00+14:00"},
            # Two tickets run together by a keyboard scanner, admitted offline.
            {"nonce": "long", "ticket": long_one["ticket"] * 2, "scanned_at": at,
             "local_result": "admitted"},
            # A device clock a day fast: counted as made on arrival.
            {"nonce": "fast", "ticket": "X", "scanned_at": "2999-01-01T00:00:00+00:00",
             "local_result": "refused", "local_reason": "invalid_format"},
        ],
    }  # fmt: skip
    answer = client.post("/api/v1/checkin/sync", json=batch, headers=gate.headers)
    assert answer.status_code == 200, answer.json
    results = {r["nonce"]: r for r in answer.json["results"]}
    assert results["ok"]["result"] == "admitted"
    for nonce, reason in (
        ("no-text", "invalid_scan"),
        ("words", "invalid_scanned_at"),
        ("naive", "invalid_scanned_at"),
        ("old", "invalid_scanned_at"),
        ("far", "invalid_scanned_at"),
        ("first", "invalid_scanned_at"),
    ):
        assert (results[nonce]["result"], results[nonce]["reason"]) == ("rejected", reason)
    assert results["long"]["result"] == "refused" and results["long"]["conflict"]
    assert results["fast"]["result"] == "refused"
    assert {s.nonce for s in db.session.scalars(select(Scan))} == {"ok", "long", "fast"}


def test_a_nonce_names_one_request(gate):
    first, second = gate.book(), gate.book()
    assert gate.scan(ticket=first["ticket"], nonce="n-1").json["result"] == "admitted"
    again = gate.scan(ticket=first["ticket"], nonce="n-1").json
    assert (again["result"], again["replayed"]) == ("admitted", True)
    other = gate.scan(ticket=second["ticket"], nonce="n-1")
    assert (other.status_code, other.json["error"]) == (409, "nonce_reused")
    out = gate.scan(path="/api/v1/checkout", ticket=first["ticket"], nonce="n-1")
    assert (out.status_code, out.json["error"]) == (409, "nonce_reused")
    status = db.session.scalar(select(Booking.status).where(Booking.code == second["code"]))
    assert status == "confirmed"


def test_sync_of_forged_and_duplicate_nonces(gate, client):
    booking = gate.book()
    forged = booking["ticket"][:-3] + ("AAA" if booking["ticket"][-3:] != "AAA" else "BBB")
    at = utcnow().isoformat()
    twice = [_offline("d-1", booking["ticket"]), _offline("d-1", booking["ticket"])]
    assert (
        client.post("/api/v1/checkin/sync", json={"scans": twice}, headers=gate.headers).json[
            "error"
        ]
        == "invalid_nonce"
    )
    body = {"scans": [{"nonce": "f-1", "scanned_at": at, "ticket": forged,
                       "local_result": "admitted"}]}  # fmt: skip
    result = client.post("/api/v1/checkin/sync", json=body, headers=gate.headers).json
    assert result["results"][0]["result"] == "refused"
    assert result["results"][0]["conflict"] in {"invalid_signature", "invalid_format"}


def test_staff_cannot_sync_at_another_point(gate, client, make_point):
    make_point(code="JKT-956")
    body = {"market_point": "JKT-956", "scans": []}
    assert client.post("/api/v1/checkin/sync", json=body, headers=gate.headers).status_code == 403


def test_session_posts_need_the_csrf_token(app, gate, client, make_user):
    """The gate page scans through the API with its session; then CSRF applies."""
    booking = gate.book()
    user, _ = make_user("page@antri.test", "staff", gate.point)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        with client.session_transaction() as session:
            session["_user_id"] = user.get_id()
            session["_fresh"] = True
        refused = client.post("/api/v1/checkin", json={"code": booking["code"]})
        assert refused.status_code == 400 and refused.json["error"] == "csrf_failed"
        page = client.get("/gate")
        token = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        admitted = client.post(
            "/api/v1/checkin", json={"code": booking["code"]}, headers={"X-CSRFToken": token}
        )
        assert admitted.json["result"] == "admitted"
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


# The race, through a real multi-process server ----------------------------------


def test_unguarded_check_then_update_admits_twice(app, gate):
    """Guard off (read the status, then write it): both devices admit one ticket."""
    booking = gate.book()
    barrier = threading.Barrier(2)
    admitted = []

    def naive_check_in() -> None:
        with app.app_context():
            row = db.session.scalar(select(Booking).where(Booking.code == booking["code"]))
            barrier.wait()
            if row.status == "confirmed":
                time.sleep(0.05)
                db.session.execute(
                    update(Booking).where(Booking.id == row.id).values(status="checked_in")
                )
                db.session.commit()
                admitted.append(1)
            db.session.remove()

    threads = [threading.Thread(target=naive_check_in) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 2


@pytest.mark.slow
def test_two_simultaneous_scans_admit_exactly_once_ten_times(app, gate, tmp_path):
    env = {
        "ANTRI_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "NIK_HASH_KEY": app.config["NIK_HASH_KEY"],
        "TICKET_KEY_DIR": app.config["TICKET_KEY_DIR"],
        "RATELIMIT_ENABLED": "false",
        "REDIS_URL": "",
    }
    tickets = [gate.book()["ticket"] for _ in range(10)]
    with gunicorn(env, workers=4, threads=4, log=tmp_path / "gunicorn.log") as url:
        for round_, ticket in enumerate(tickets):
            barrier = threading.Barrier(2)

            def scan(device: str, ticket=ticket, barrier=barrier, n=round_) -> tuple[int, dict]:
                barrier.wait()
                return post_json(
                    f"{url}/api/v1/checkin",
                    {"ticket": ticket, "device": device, "nonce": f"{device}-{n}"},
                    gate.headers,
                )

            with ThreadPoolExecutor(max_workers=2) as pool:
                answers = list(pool.map(scan, ["gate-a", "gate-b"]))
            assert [status for status, _ in answers] == [200, 200], answers
            outcomes = sorted(body["reason"] or body["result"] for _, body in answers)
            assert outcomes == ["admitted", "already_checked_in"]
    admitted = db.session.scalar(
        select(func.count(Scan.id)).where(Scan.result == "admitted", Scan.direction == "in")
    )
    assert admitted == 10
    assert (
        db.session.scalar(select(func.count(Booking.id)).where(Booking.status == "checked_in"))
        == 10
    )

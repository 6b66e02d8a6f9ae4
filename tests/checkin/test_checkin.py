"""Gate rules through the API: every refusal reason, first scan wins, roles and points."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from checkin.models import Scan
from extensions import db
from qr.keys import load_keyring
from qr.tokens import TicketClaims, make_token
from tests.clock import tomorrow_at


@pytest.fixture
def gate(client, make_slot, make_user, nik):
    """A running slot at a point with a staff token, and a helper to book and scan."""
    slot = make_slot(capacity=10, starts_in=-5, minutes=30)
    _, token = make_user("gate@antri.test", "staff", slot.market_point)

    class Gate:
        point = slot.market_point
        headers = {"Authorization": f"Bearer {token}"}

        @staticmethod
        def book(slot_id=slot.id):
            response = client.post(
                "/api/v1/bookings",
                json={"slot_id": slot_id, "name": "Rina", "nik": nik(), "phone": "081234567890"},
            )
            assert response.status_code == 201, response.json
            return response.json

        @classmethod
        def scan(cls, headers=None, **body):
            return client.post("/api/v1/checkin", json=body, headers=headers or cls.headers)

    Gate.slot_id = slot.id
    return Gate


def test_typed_booking_code_is_admitted(gate):
    booking = gate.book()
    typed = booking["code"][:4].lower() + "-" + booking["code"][4:].lower()
    response = gate.scan(code=typed)
    assert response.json["result"] == "admitted"
    assert response.json["booking"]["nik_last4"] == booking["nik_last4"]
    assert "nik" not in response.json["booking"]


def test_refusals_have_codes_and_are_logged(gate, make_slot, make_point):
    other_day = gate.book(make_slot(capacity=2, starts_in=24 * 60 * 3).id)
    elsewhere = make_point(code="JKT-902", name="Pasar Lain")
    wrong = gate.book(make_slot(capacity=2, starts_in=-5, point=elsewhere).id)

    assert gate.scan(code=other_day["code"]).json["reason"] == "not_today"
    refused = gate.scan(ticket=wrong["ticket"]).json
    assert refused["reason"] == "wrong_point" and "Pasar Lain" in refused["message"]
    assert refused["booking"] is None  # another point's resident stays private
    not_a_ticket = gate.scan(ticket="HELLO WORLD THIS IS NOT A TICKET").json
    assert (not_a_ticket["result"], not_a_ticket["reason"]) == ("refused", "invalid_format")
    assert gate.scan(code="ACDEFGHJ").json["reason"] == "unknown_ticket"
    empty = gate.scan(code="   ")
    assert empty.status_code == 422 and empty.json["error"] == "invalid_scan"

    logged = db.session.execute(select(Scan.result, Scan.reason).order_by(Scan.id)).all()
    assert logged == [
        ("refused", "not_today"),
        ("refused", "wrong_point"),
        ("refused", "invalid_format"),
        ("refused", "unknown_ticket"),
    ]


def test_too_early_and_too_late(gate, make_slot, ctx):
    from accounts.models import User
    from checkin.scanning import check_in
    from slots.models import Booking

    # A slot at 10:00 WIB tomorrow: its late edge is the same local day at any hour.
    booking = gate.book(make_slot(capacity=2, starts_in=0, now=tomorrow_at(10)).id)
    row = db.session.scalar(select(Booking).where(Booking.code == booking["code"]))

    user = db.session.scalar(select(User).where(User.email == "gate@antri.test"))
    start, end = row.slot.starts_at, row.slot.ends_at
    too_early = check_in(booking["code"], gate.point, user, now=start - timedelta(minutes=16))
    assert (too_early.result, too_early.reason) == ("refused", "too_early")
    edge_early = start - timedelta(minutes=15)
    too_late = check_in(booking["code"], gate.point, user, now=end + timedelta(minutes=31))
    assert (too_late.result, too_late.reason) == ("refused", "too_late")
    admitted = check_in(booking["code"], gate.point, user, now=edge_early)
    assert (admitted.result, admitted.reason) == ("admitted", "")
    db.session.commit()


def test_a_late_scan_after_midnight_is_too_late(gate, make_slot, ctx):
    """Issue 14 item 6a: a slot 23:00-23:30 WIB, late grace 30 minutes; explicit instants."""
    from accounts.models import User
    from checkin.scanning import check_in

    late_slot = make_slot(capacity=2, starts_in=23 * 60, minutes=30, now=tomorrow_at(0))
    booking = gate.book(late_slot.id)
    user = db.session.scalar(select(User).where(User.email == "gate@antri.test"))
    day = tomorrow_at(0)

    def scan(hours: int, minutes: int):
        return check_in(
            booking["code"], gate.point, user, now=day + timedelta(hours=hours, minutes=minutes)
        )

    after_midnight = scan(24, 5)  # 00:05 the next local day: 35 minutes after the end
    assert (after_midnight.result, after_midnight.reason) == ("refused", "too_late")
    # The end is on another day, so the message gives its date.
    assert day.strftime("%d-%m-%Y") + " 23:30" in after_midnight.message
    a_week_later = scan(24 * 7 + 10, 0)
    assert a_week_later.reason == "too_late"
    same_day = scan(0, 30)  # the slot's own day, 00:30: before its window
    assert (same_day.reason, "22:45" in same_day.message) == ("too_early", True)
    day_before = scan(-1, 0)  # 23:00 the local day before
    assert day_before.reason == "not_today"
    edge = scan(24, 0)  # 00:00 the next day, exactly 30 minutes after the end: admitted
    assert (edge.result, edge.reason) == ("admitted", "")
    db.session.commit()


def test_cancelled_booking_is_refused(gate, make_slot, client):
    slot = make_slot(capacity=2, starts_in=24 * 60 * 2)
    booking = gate.book(slot.id)
    cancel = client.post(
        f"/api/v1/bookings/{booking['code']}/cancel", json={"phone": "081234567890"}
    )
    assert cancel.json["status"] == "cancelled"
    response = gate.scan(ticket=booking["ticket"]).json
    assert (response["result"], response["reason"]) == ("refused", "cancelled")


@pytest.mark.parametrize("position", [0, 5, 60, 118])
def test_any_altered_character_is_refused(gate, position):
    ticket = gate.book()["ticket"]
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
    swapped = alphabet[(alphabet.index(ticket[position]) + 1) % len(alphabet)]
    altered = ticket[:position] + swapped + ticket[position + 1 :]
    response = gate.scan(ticket=altered).json
    assert response["result"] == "refused"
    assert response["reason"] in {"invalid_signature", "invalid_format", "unknown_key"}
    assert gate.scan(ticket=ticket).json["result"] == "admitted"


def test_ticket_signed_with_another_key_is_refused(gate, tmp_path, ctx):
    from slots.models import Booking

    booking = gate.book()
    row = db.session.scalar(select(Booking).where(Booking.code == booking["code"]))
    forger = load_keyring(tmp_path / "forger")
    forged = make_token(
        TicketClaims(1, row.id, row.slot.market_point_id, row.slot.starts_at, row.slot.ends_at),
        forger.signing_key,
    )
    assert forged != booking["ticket"]
    response = gate.scan(ticket=forged).json
    assert (response["result"], response["reason"]) == ("refused", "invalid_signature")
    unknown_kid = make_token(
        TicketClaims(7, row.id, row.slot.market_point_id, row.slot.starts_at, row.slot.ends_at),
        forger.signing_key,
    )
    assert gate.scan(ticket=unknown_kid).json["reason"] == "unknown_key"


def test_auth_and_scope(gate, client, make_point, make_user):
    booking = gate.book()
    assert client.post("/api/v1/checkin", json={"code": booking["code"]}).status_code == 401
    bad = gate.scan(headers={"Authorization": "Bearer antri_nope"}, code=booking["code"])
    assert bad.status_code == 401 and bad.json["error"] == "unauthorized"

    elsewhere = make_point(code="JKT-903")
    _, other_staff = make_user("other@antri.test", "staff", elsewhere)
    headers = {"Authorization": f"Bearer {other_staff}"}
    forbidden = gate.scan(headers=headers, code=booking["code"], market_point=gate.point.code)
    assert forbidden.status_code == 403
    own_point = gate.scan(headers=headers, code=booking["code"]).json
    assert own_point["reason"] == "wrong_point"

    _, boss = make_user("boss@antri.test", "supervisor")
    boss_headers = {"Authorization": f"Bearer {boss}"}
    assert gate.scan(headers=boss_headers, code=booking["code"]).status_code == 422
    as_boss = gate.scan(headers=boss_headers, code=booking["code"], market_point=gate.point.code)
    assert as_boss.json["result"] == "admitted"

    staff_occupancy = client.get("/api/v1/occupancy", headers=gate.headers)
    assert staff_occupancy.status_code == 403
    assert client.get("/api/v1/occupancy").status_code == 401


def test_first_scan_wins_across_two_devices(app, gate):
    ticket = gate.book()["ticket"]
    headers = gate.headers
    barrier = threading.Barrier(2)
    results: list[str] = []

    def scan() -> None:
        with app.test_client() as device:
            barrier.wait()
            response = device.post("/api/v1/checkin", json={"ticket": ticket}, headers=headers)
        results.append(response.json["reason"] or response.json["result"])

    threads = [threading.Thread(target=scan) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["admitted", "already_checked_in"]


def test_safe_limit_makes_valid_tickets_wait(gate, client):
    gate.point.safe_limit = 1
    db.session.commit()
    first, second = gate.book(), gate.book()
    assert gate.scan(code=first["code"]).json["result"] == "admitted"
    waiting = gate.scan(ticket=second["ticket"]).json
    assert (waiting["result"], waiting["reason"]) == ("wait", "point_full")
    assert waiting["inside_now"] == 1 and "1" in waiting["message"]
    assert waiting["booking"]["status"] == "confirmed"  # not used up

    out = client.post("/api/v1/checkout", json={"code": first["code"]}, headers=gate.headers).json
    assert (out["result"], out["inside_now"]) == ("checked_out", 0)
    assert gate.scan(ticket=second["ticket"]).json["result"] == "admitted"
    logged = db.session.execute(select(Scan.direction, Scan.result).order_by(Scan.id)).all()
    assert logged == [("in", "admitted"), ("in", "wait"), ("out", "admitted"), ("in", "admitted")]


def test_checkout_refusals(gate, client):
    booking = gate.book()

    def out():
        return client.post(
            "/api/v1/checkout", json={"code": booking["code"]}, headers=gate.headers
        ).json

    assert out()["reason"] == "not_checked_in"
    gate.scan(code=booking["code"])
    assert out()["result"] == "checked_out"
    assert out()["reason"] == "already_checked_out"
    assert gate.scan(code=booking["code"]).json["reason"] == "already_checked_in"


def test_two_gates_cannot_both_fill_the_last_place(app, gate):
    gate.point.safe_limit = 1
    db.session.commit()
    tickets = [gate.book()["ticket"], gate.book()["ticket"]]
    headers = gate.headers
    barrier = threading.Barrier(2)
    results: list[str] = []

    def scan(ticket: str) -> None:
        with app.test_client() as device:
            barrier.wait()
            response = device.post("/api/v1/checkin", json={"ticket": ticket}, headers=headers)
        results.append(response.json["result"])

    threads = [threading.Thread(target=scan, args=(t,)) for t in tickets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["admitted", "wait"]

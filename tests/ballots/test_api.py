"""The ballot API (issue 16 §1-2) on both databases: creating (admin), entering, the
refusals, the held slots' ``ballot_running``, the result look-up, the CLI."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from ballots.draw import draw_ballot
from common.audit import AuditEntry
from common.timeutil import utcnow
from extensions import db
from slots.models import Notice
from tests.ballots.conftest import PHONE


def _admin(make_user):
    _, token = make_user("admin@antri.test", "admin")
    return {"Authorization": f"Bearer {token}"}


def _body(nik, slots, **extra):
    return {
        "name": "Siti Aminah",
        "nik": nik,
        "phone": PHONE,
        "preferences": [s.id for s in slots[:2]],
        **extra,
    }


def test_create_by_admin_and_read_by_anyone(client, ballot_day, make_user):
    point, slots = ballot_day
    now = utcnow()
    body = {
        "market_point": point.code,
        "date": "2026-12-05",
        "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=2)).isoformat(),
    }
    assert client.post("/api/v1/ballots", json=body).status_code == 401
    answer = client.post("/api/v1/ballots", json=body, headers=_admin(make_user))
    assert answer.status_code == 201, answer.json
    ballot = answer.json
    assert (ballot["market_point"], ballot["date"], ballot["status"]) == (
        "JKT-900",
        "2026-12-05",
        "open",
    )
    assert (ballot["places"], ballot["entries"]) == (40, 0)
    assert len(ballot["commitment"]) == 64
    assert client.get(f"/api/v1/ballots/{ballot['id']}").json == ballot
    listed = client.get("/api/v1/ballots?market_point=JKT-900&date=2026-12-05").json
    assert [b["id"] for b in listed] == [ballot["id"]]
    assert client.get("/api/v1/ballots?market_point=JKT-901").json == []
    again = client.post("/api/v1/ballots", json=body, headers=_admin(make_user))
    assert (again.status_code, again.json["error"]) == (409, "ballot_exists")
    audit = db.session.scalars(select(AuditEntry.action)).all()
    assert "ballot.create" in audit
    reversed_window = dict(body, date="2026-12-06", closes_at=body["opens_at"])
    bad = client.post("/api/v1/ballots", json=reversed_window, headers=_admin(make_user))
    assert (bad.status_code, bad.json["error"]) == (422, "invalid_ballot")


def test_no_ballot_over_booked_slots(client, ballot_day, make_user, make_nik):
    point, slots = ballot_day
    booked = client.post(
        "/api/v1/bookings",
        json={"slot_id": slots[1].id, "name": "Budi", "nik": make_nik(), "phone": PHONE},
    )
    assert booked.status_code == 201
    now = utcnow()
    body = {
        "market_point": point.code,
        "date": "2026-12-05",
        "opens_at": now.isoformat(),
        "closes_at": (now + timedelta(hours=2)).isoformat(),
    }
    answer = client.post("/api/v1/ballots", json=body, headers=_admin(make_user))
    assert (answer.status_code, answer.json["error"]) == (409, "slots_have_bookings")


def test_held_slots_refuse_booking_and_waiting(client, open_ballot, ballot_day, make_nik):
    _, slots = ballot_day
    person = {"name": "Budi", "nik": make_nik(), "phone": PHONE}
    booking = client.post("/api/v1/bookings", json={"slot_id": slots[0].id, **person})
    assert (booking.status_code, booking.json["error"]) == (409, "ballot_running")
    assert "undian" in booking.json["message"].lower() or "ballot" in booking.json["message"]
    waiting = client.post(f"/api/v1/slots/{slots[0].id}/waiting-list", json=person)
    assert (waiting.status_code, waiting.json["error"]) == (409, "ballot_running")


def test_held_slots_refuse_booking_on_both_paths(app, open_ballot, ballot_day, make_nik):
    import pytest

    import slots.booking as booking
    from slots.errors import BallotRunning

    _, slots = ballot_day
    for one_statement in (True, False):
        booking.ONE_STATEMENT = one_statement
        try:
            with pytest.raises(BallotRunning):
                booking.place_booking(slots[2].id, "Budi", make_nik(), PHONE)
        finally:
            booking.ONE_STATEMENT = True
            db.session.rollback()


def test_enter_once_per_nik(client, open_ballot, ballot_day, make_nik):
    _, slots = ballot_day
    nik = make_nik()
    url = f"/api/v1/ballots/{open_ballot.id}/entries"
    first = client.post(url, json=_body(nik, slots))
    assert first.status_code == 201, first.json
    assert first.json["status"] == "entered" and len(first.json["entry_code"]) == 8
    again = client.post(url, json=_body(nik, slots))
    assert (again.status_code, again.json["error"]) == (409, "already_entered")
    wrong = client.post(url, json=_body(make_nik(), slots, preferences=[999999]))
    assert (wrong.status_code, wrong.json["error"]) == (422, "invalid_preferences")
    four = client.post(url, json=_body(make_nik(), slots, preferences=[s.id for s in slots]))
    assert (four.status_code, four.json["error"]) == (422, "invalid_preferences")
    bad_nik = client.post(url, json=_body("123", slots))
    assert (bad_nik.status_code, bad_nik.json["error"]) == (422, "invalid_nik")
    assert client.post("/api/v1/ballots/99999/entries", json=_body(make_nik(), slots)).json[
        "error"
    ] == ("ballot_not_found")
    code = first.json["entry_code"]
    looked = client.get(f"{url}/{code}?phone={PHONE}")
    assert (looked.status_code, looked.json["status"]) == (200, "entered")
    assert client.get(f"{url}/{code}?phone=081299999999").status_code == 404
    message = db.session.scalar(select(Notice).where(Notice.kind == "ballot_entry"))
    assert code in message.body and message.ref == f"ballot-entry:{code}"
    assert "undian" in message.body.lower()  # Indonesian by default


def test_idempotency_key(client, open_ballot, ballot_day, make_nik):
    _, slots = ballot_day
    url = f"/api/v1/ballots/{open_ballot.id}/entries"
    body = _body(make_nik(), slots)
    first = client.post(url, json=body, headers={"Idempotency-Key": "k-1"})
    replay = client.post(url, json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json["entry_code"] == first.json["entry_code"]
    other = client.post(url, json=_body(make_nik(), slots), headers={"Idempotency-Key": "k-1"})
    assert (other.status_code, other.json["error"]) == (422, "idempotency_key_reused")


def test_outside_the_window(client, app, ballot_day, make_nik):
    from ballots.rounds import create_ballot

    point, slots = ballot_day
    now = utcnow()
    ballot = create_ballot(
        point.code, slots[0].starts_at.date(), now + timedelta(hours=1), now + timedelta(hours=2)
    )
    db.session.commit()
    answer = client.post(f"/api/v1/ballots/{ballot.id}/entries", json=_body(make_nik(), slots))
    assert (answer.status_code, answer.json["error"]) == (409, "ballot_not_open")
    assert client.get(f"/api/v1/ballots/{ballot.id}").json["status"] == "scheduled"


def test_results_after_the_draw(client, open_ballot, ballot_day, make_nik):
    _, slots = ballot_day
    url = f"/api/v1/ballots/{open_ballot.id}/entries"
    codes = []
    for _ in range(45):
        answer = client.post(url, json=_body(make_nik(), slots, preferences=[slots[0].id]))
        codes.append(answer.json["entry_code"])
    proof = draw_ballot(open_ballot.id, open_ballot.closes_at)
    db.session.commit()
    winners = {w["entry_code"] for w in proof["winners"]}
    assert len(winners) == 10  # one slot named: its 10 places
    statuses = {}
    for code in codes:
        statuses[code] = client.get(f"{url}/{code}?phone={PHONE}").json
    won = [s for s in statuses.values() if s["status"] == "won"]
    assert len(won) == 10 and all(len(s["booking_code"]) == 8 for s in won)
    waiting = sorted(s["position"] for s in statuses.values() if s["status"] == "waiting")
    assert waiting == list(range(1, 36))
    assert client.get(f"/api/v1/ballots/{open_ballot.id}").json["status"] == "drawn"
    listed = client.get(f"/api/v1/ballots/{open_ballot.id}/list")
    assert listed.status_code == 200 and len(listed.text.splitlines()) == 45
    # Places left after the draw open first-come: slot 2 was named by nobody.
    free = client.post(
        "/api/v1/bookings",
        json={"slot_id": slots[1].id, "name": "Budi", "nik": make_nik(), "phone": PHONE},
    )
    assert free.status_code == 201, free.json


def test_cli_create_draw_verify(app, ballot_day, make_nik):
    point, slots = ballot_day
    runner = app.test_cli_runner()
    now = utcnow()
    made = runner.invoke(
        args=[
            "ballots",
            "create",
            point.code,
            "--date",
            "2026-12-05",
            "--opens",
            (now - timedelta(minutes=5)).isoformat(),
            "--closes",
            (now + timedelta(seconds=2)).isoformat(),
        ]
    )
    assert made.exit_code == 0, made.output
    ballot_id = int(made.output.split()[1].rstrip(":"))
    early = runner.invoke(args=["ballots", "draw", str(ballot_id)])
    assert early.exit_code == 1 and "ballot_not_closed" in early.output
    from ballots.entering import enter_ballot

    for _ in range(5):
        enter_ballot(ballot_id, "Warga", make_nik(), PHONE, [slots[0].id])
    db.session.commit()
    import time

    time.sleep(2.1)
    drawn = runner.invoke(args=["ballots", "draw", str(ballot_id)])
    assert drawn.exit_code == 0, drawn.output
    assert "5 entries, 5 won" in drawn.output
    verified = runner.invoke(args=["ballots", "verify", str(ballot_id)])
    assert verified.exit_code == 0 and "proof holds" in verified.output

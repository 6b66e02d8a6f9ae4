"""What a tester found trying to break ballots (issue 16), on both databases: each test
pins one finding's fix."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from ballots.draw import draw_ballot
from ballots.entering import enter_ballot
from ballots.models import NOT_DRAWN, WAITING, WON, Ballot, BallotEntry
from ballots.proof import proof_json, published_list, verify
from common.audit import CLI
from extensions import db
from slots.models import Booking, Notice, WaitingListEntry
from tests.ballots.conftest import PHONE
from tests.ballots.test_draw import VERIFIER


def _close(ballot):
    return ballot.closes_at + timedelta(seconds=1)


def test_a_slot_the_market_closes_during_the_ballot_is_left_out_of_the_draw(
    client, open_ballot, ballot_day, make_nik
):
    """A held slot closed by the market (issue 8) while the ballot runs gives no place
    and no waiting line at the draw; the draw does not crash on it (it used to count
    its places, then fail to take one: RuntimeError at every run, forever)."""
    from slots.staff import close_slot

    _, slots = ballot_day
    first, second = slots[0], slots[1]
    codes = [
        enter_ballot(open_ballot.id, f"Warga {i}", make_nik(), PHONE, [first.id, second.id]).code
        for i in range(12)
    ]
    only_first = enter_ballot(open_ballot.id, "Warga", make_nik(), PHONE, [first.id]).code
    db.session.commit()
    close_slot(first.id, CLI)
    db.session.commit()
    # Entering names a closed slot no more.
    answer = client.post(
        f"/api/v1/ballots/{open_ballot.id}/entries",
        json={"name": "Siti", "nik": make_nik(), "phone": PHONE, "preferences": [first.id]},
    )
    assert (answer.status_code, answer.json["error"]) == (422, "invalid_preferences")
    proof = draw_ballot(open_ballot.id, _close(open_ballot))
    db.session.commit()
    assert proof["places"][str(first.id)] == 0
    assert {w["slot_id"] for w in proof["winners"]} == {second.id}
    assert len(proof["winners"]) == 10 and len(proof["waiting"]) == 3
    assert db.session.scalar(select(func.count(Booking.id)).where(Booking.slot_id == first.id)) == 0
    lines = db.session.scalars(select(WaitingListEntry.slot_id)).all()
    assert lines == [second.id, second.id]
    statuses = {e.code: e.status for e in db.session.scalars(select(BallotEntry))}
    assert statuses.pop(only_first) == NOT_DRAWN  # no line left to wait in
    assert sorted(statuses.values()) == sorted([WON] * 10 + [WAITING] * 2)
    assert set(statuses) == set(codes)
    told = db.session.scalar(select(Notice.body).where(Notice.ref == f"ballot-result:{only_first}"))
    assert "pasar menutup sesi yang Anda pilih" in told
    assert verify(proof_json(open_ballot), published_list(open_ballot)) == []


def test_a_failing_draw_holds_back_no_other_ballot(app, ctx, make_point, make_slot, monkeypatch):
    """The timed job draws every due ballot even when one draw fails (logged, tried
    again at the next run); it used to stop at the first failure, and without Redis
    the inline sweep's relay after it never ran: no message went out at all."""
    import ballots.draw
    from ballots.rounds import create_ballot
    from common.timeutil import local_date, utcnow
    from jobs import run_timed_work

    now = utcnow()
    ids = []
    for code in ("JKT-901", "JKT-902"):
        point = make_point(code=code)
        slot = make_slot(capacity=2, starts_in=2 * 1440, point=point)
        day = local_date(slot.starts_at, point.timezone)
        ballot = create_ballot(code, day, now - timedelta(minutes=1), now + timedelta(hours=1))
        db.session.flush()
        ids.append(ballot.id)
    db.session.commit()
    real = ballots.draw.draw_ballot

    def flaky(ballot_id, *args, **kwargs):
        if ballot_id == ids[0]:
            raise RuntimeError("lock timeout")
        return real(ballot_id, *args, **kwargs)

    monkeypatch.setattr(ballots.draw, "draw_ballot", flaky)
    later = (now + timedelta(hours=1, seconds=1)).isoformat()
    assert run_timed_work(later)["ballots_drawn"] == 1
    db.session.expire_all()
    drawn = {b.id: b.drawn_at is not None for b in db.session.scalars(select(Ballot))}
    assert drawn == {ids[0]: False, ids[1]: True}
    monkeypatch.undo()
    assert run_timed_work(later)["ballots_drawn"] == 1
    db.session.expire_all()
    assert all(b.drawn_at is not None for b in db.session.scalars(select(Ballot)))


def test_elderly_share_counts_the_places_the_stock_covers(
    app, open_ballot, ballot_day, make_nik, tmp_path
):
    """On a day whose stock covers fewer bookings than the slots hold, the elderly go
    first for BALLOT_ELDERLY_SHARE of the places given (floor(0.3 x 10) = 3), not of
    the slots' 40: they took all ten before."""
    from slots.stock import set_stock

    point, slots = ballot_day
    set_stock(point.code, open_ballot.day, 10)
    db.session.commit()
    ids = [s.id for s in slots]
    for i in range(60):
        born = "120550" if i % 2 else "120590"  # every other one aged 76
        enter_ballot(open_ballot.id, f"Warga {i}", make_nik(born), PHONE, [ids[i % 4]])
    db.session.commit()
    proof = draw_ballot(open_ballot.id, _close(open_ballot))
    db.session.commit()
    assert (proof["cap"], proof["elderly_places"]) == (10, 3)
    entries = {e.code: e for e in db.session.scalars(select(BallotEntry))}
    winners = [w["entry_code"] for w in proof["winners"]]
    assert len(winners) == 10
    # The first three elderly in draw order win first, then the draw order alone.
    elderly_first = [c for c in proof["order"] if entries[c].elderly][:3]
    rest = [c for c in proof["order"] if c not in elderly_first][:7]
    assert winners == elderly_first + rest
    assert verify(proof_json(open_ballot), published_list(open_ballot)) == []
    proof_file, list_file = tmp_path / "proof.json", tmp_path / "list.txt"
    proof_file.write_text(json.dumps(proof_json(open_ballot)))
    list_file.write_text(published_list(open_ballot))
    ran = subprocess.run(
        [sys.executable, str(VERIFIER), str(proof_file), str(list_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout
    # A proof claiming the share of the slots' places fails.
    cheat = dict(proof_json(open_ballot), elderly_places=12)
    assert "elderly_places is not floor(elderly_share x places)" in verify(
        cheat, published_list(open_ballot)
    )


def test_window_faults_in_indonesian_and_the_answer_in_utc(client, ballot_day, make_user):
    """A refused window says why in Indonesian first (it was English only); a 31-day
    window plus an hour is refused; the created ballot's instants are UTC in the POST's
    answer as in every GET (the POST echoed the offset it was sent)."""
    point, _ = ballot_day
    _, token = make_user("admin@antri.test", "admin")
    headers = {"Authorization": f"Bearer {token}"}

    def create(opens, closes):
        body = {"market_point": point.code, "date": "2026-12-05"}
        return client.post(
            "/api/v1/ballots",
            json={**body, "opens_at": opens, "closes_at": closes},
            headers=headers,
        )

    reversed_ = create("2026-12-03T12:00:00+07:00", "2026-12-03T11:00:00+07:00")
    assert (reversed_.status_code, reversed_.json["fault"]) == (422, "order")
    assert reversed_.json["message"] == "Pendaftaran harus ditutup setelah dibuka."
    past = create("2026-12-01T08:00:00+07:00", "2026-12-02T08:00:00+07:00")
    assert past.json["message"] == "Waktu tutup pendaftaran harus di masa depan."
    long = create("2026-11-03T09:00:00+07:00", "2026-12-04T10:00:00+07:00")  # 31 d 1 h
    assert (long.status_code, long.json["fault"]) == (422, "length")
    late = create("2026-12-03T09:00:00+07:00", "2026-12-05T11:00:00+07:00")
    assert late.json["message"] == (
        "Pendaftaran harus ditutup sebelum sesi pertama hari itu dimulai."
    )
    made = create("2026-12-03T09:00:00+07:00", "2026-12-04T10:00:00+07:00")
    assert made.status_code == 201, made.json
    assert (made.json["opens_at"], made.json["closes_at"]) == (
        "2026-12-03T02:00:00+00:00",
        "2026-12-04T03:00:00+00:00",
    )
    assert client.get(f"/api/v1/ballots/{made.json['id']}").json == made.json


def test_promotion_after_the_draw_follows_the_draw_order(client, open_ballot, ballot_day, make_nik):
    """After the draw a winner cancels: the first loser in draw order who named that
    slot gets the place, and the result look-up tells them ``won`` with the booking;
    the next in line moves up to number 1."""
    from slots.booking import cancel_booking

    _, slots = ballot_day
    first = slots[0]
    entered = {}
    for i in range(13):
        entry = enter_ballot(open_ballot.id, f"Warga {i}", make_nik(), PHONE, [first.id])
        entered[entry.code] = entry
    db.session.commit()
    proof = draw_ballot(open_ballot.id, _close(open_ballot))
    db.session.commit()
    assert len(proof["winners"]) == 10 and len(proof["waiting"]) == 3
    loser, second = proof["waiting"][0], proof["waiting"][1]
    won = db.session.scalar(select(BallotEntry).where(BallotEntry.code == proof["order"][0]))
    cancel_booking(db.session.get(Booking, won.booking_id))
    db.session.commit()

    def look(code):
        return client.get(f"/api/v1/ballots/{open_ballot.id}/entries/{code}?phone={PHONE}").json

    promoted = look(loser)
    assert promoted["status"] == "won" and promoted["booking_code"]
    booking = db.session.scalar(select(Booking).where(Booking.code == promoted["booking_code"]))
    assert booking.slot_id == first.id and booking.status == "confirmed"
    assert (look(second)["status"], look(second)["position"]) == ("waiting", 1)


def test_a_cancelled_booking_does_not_block_a_ballot(ballot_day, make_nik):
    """Only active bookings hold a day: one booked and cancelled before the ballot
    leaves its place to the draw (places counted whole)."""
    from ballots.rounds import create_ballot
    from common.timeutil import local_date, utcnow
    from slots.booking import cancel_booking, place_booking

    point, slots = ballot_day
    booking = place_booking(slots[1].id, "Budi", make_nik(), PHONE)
    db.session.commit()
    cancel_booking(db.session.get(Booking, booking.id))
    db.session.commit()
    now = utcnow()
    day = local_date(slots[0].starts_at, point.timezone)
    ballot = create_ballot(point.code, day, now, now + timedelta(hours=1))
    db.session.commit()
    assert ballot.places == 40


def test_the_verifier_refuses_a_proof_that_is_no_object(tmp_path):
    """``tools/verify_ballot.py`` given JSON that is not an object: exit 2 with why (it
    ended in a traceback, exit 1 as if the proof had failed)."""
    proof_file, list_file = tmp_path / "proof.json", tmp_path / "list.txt"
    proof_file.write_text("[]")
    list_file.write_text("ABCDEFGH:1:0\n")
    ran = subprocess.run(
        [sys.executable, str(VERIFIER), str(proof_file), str(list_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (ran.returncode, ran.stderr) == (2, "")
    assert "not a JSON object" in ran.stdout


@pytest.fixture
def limited(app, ctx, tmp_path):
    """A second app on the suite's database with the README's look-up budget (10 per
    code per minute) turned on; the limiter goes back to the suite's app after."""
    from app import create_app
    from extensions import limiter

    limiter._storage_dead = False
    limited_app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": "test-secret",
            "NIK_HASH_KEY": app.config["NIK_HASH_KEY"],
            "TICKET_KEY_DIR": app.config["TICKET_KEY_DIR"],
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
            "RATE_LIMIT_LOOKUP_IP": "100/minute",
            "RATE_LIMIT_LOOKUP_CODE": "10/minute",
        }
    )
    yield limited_app
    with limited_app.app_context():
        db.engine.dispose()
    limiter._storage_dead = False
    limiter.init_app(app)


def test_the_result_form_shares_the_code_s_look_up_budget(
    limited, open_ballot, ballot_day, make_nik
):
    """An entry code is public (list, proof); guessing its phone on the page's result
    form counts in the code's one budget with the API look-up: the 11th try, on either
    path and from any address, is 429 (the form had only the per-address limit)."""
    _, slots = ballot_day
    entry = enter_ballot(open_ballot.id, "Siti Aminah", make_nik(), PHONE, [slots[0].id])
    db.session.commit()
    client = limited.test_client()
    ballot_id, code = open_ballot.id, entry.code

    def api(i):
        return client.get(
            f"/api/v1/ballots/{ballot_id}/entries/{code}?phone=0813000000{i:02d}",
            environ_base={"REMOTE_ADDR": f"10.0.7.{i}"},
        )

    def form(i):
        return client.post(
            f"/ballots/{ballot_id}/result",
            data={"code": code.lower(), "phone": f"0813000000{i:02d}"},
            environ_base={"REMOTE_ADDR": f"10.0.8.{i}"},
        )

    answers = [(api if i % 2 else form)(i).status_code for i in range(10)]
    assert answers == [404] * 10
    assert (form(50).status_code, api(51).status_code) == (429, 429)


def test_the_market_page_marks_a_balloted_day(client, open_ballot, ballot_day):
    """The day chips of the market page mark the balloted day Undian (it read "0
    jadwal", as if the day had nothing, since held slots are not bookable)."""
    import re

    point, _ = ballot_day
    page = client.get(f"/points/{point.code}?date=2026-12-05").text
    chip = re.search(r'<a [^>]*data-day="2026-12-05"[^>]*>(.*?)</a>', page, re.S)
    assert chip and 'class="n">Undian<' in chip.group(1), chip
    assert "none" not in re.search(r'data-day="2026-12-05"[^>]*class="([^"]*)"', page).group(1)
    other = re.search(r'<a [^>]*data-day="2026-12-06"[^>]*>(.*?)</a>', page, re.S)
    assert "0 jadwal" in other.group(1)


def test_a_point_deactivated_after_its_ballot_opened_takes_no_entries(
    client, open_ballot, ballot_day, make_nik
):
    point, slots = ballot_day
    point.active = False
    db.session.commit()
    body = {"name": "Ani", "nik": make_nik(), "phone": "081234567890", "preferences": [slots[0].id]}
    answer = client.post(f"/api/v1/ballots/{open_ballot.id}/entries", json=body)
    assert answer.status_code == 404 and answer.json["error"] == "ballot_not_found"
    assert db.session.scalar(select(func.count(BallotEntry.id))) == 0

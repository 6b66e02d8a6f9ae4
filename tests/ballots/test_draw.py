"""The draw (issue 16 §3) on both databases: 300 entries for 40 places, 30 of them aged
60 or more; the proof recomputes with the stand-alone verifier; a changed list or seed
fails; two draws at once yield one result."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ballots import algorithm
from ballots.age import is_elderly
from ballots.draw import draw_ballot
from ballots.entering import enter_ballot
from ballots.models import WAITING, WON, BallotEntry
from ballots.proof import proof_json, published_list, verify
from extensions import db
from slots.models import Booking, Notice, Slot, WaitingListEntry
from tests.ballots.conftest import PHONE

VERIFIER = Path(__file__).resolve().parents[2] / "tools" / "verify_ballot.py"


def _enter_many(ballot, slots, make_nik, total=300, elderly=30):
    """``total`` entries, ``elderly`` of them born 1950 (76 on the day), every third a
    woman (day + 40); preferences rotate over the slots. One commit."""
    ids = [s.id for s in slots]
    codes = {}
    for i in range(total):
        born = "120550" if i < elderly else "120590"
        if i % 3 == 0:
            born = str(int(born[:2]) + 40) + born[2:]
        prefs = [ids[i % 4], ids[(i + 1) % 4]] if i % 2 else [ids[i % 4]]
        nik = make_nik(born)
        entry = enter_ballot(ballot.id, f"Warga {i}", nik, PHONE, prefs)
        codes[entry.code] = nik
    db.session.commit()
    return codes


def _close(ballot):
    return ballot.closes_at + timedelta(seconds=1)


def test_age_from_nik():
    from datetime import date

    assert is_elderly("3171041205500001", date(2026, 12, 5))  # 76
    # A woman born 12-12-1966: 59 on the 5th, 60 on her birthday.
    assert not is_elderly("3171045212660001", date(2026, 12, 5))
    assert is_elderly("3171045212660001", date(2026, 12, 12))  # her 60th birthday
    assert not is_elderly("3171041205100001", date(2026, 12, 5))  # 2010, not 1910


def test_300_entries_for_40_places(app, open_ballot, ballot_day, make_nik):
    _, slots = ballot_day
    codes = _enter_many(open_ballot, slots, make_nik)
    proof = draw_ballot(open_ballot.id, _close(open_ballot))
    db.session.commit()
    bookings = db.session.scalars(select(Booking)).all()
    assert len(bookings) == 40
    assert {s.id: s.booked_count for s in db.session.scalars(select(Slot))} == dict.fromkeys(
        [s.id for s in slots], 10
    )
    entries = {e.code: e for e in db.session.scalars(select(BallotEntry))}
    won = [e for e in entries.values() if e.status == WON]
    assert len(won) == 40 and len(proof["winners"]) == 40
    assert Counter(e.status for e in entries.values()) == {WON: 40, WAITING: 260}
    # No NIK twice: one booking per resident, and every winner's booking is its own.
    assert len({b.resident_id for b in bookings}) == 40
    assert {b.channel for b in bookings} == {"ballot"}
    assert {e.booking_id for e in won} == {b.id for b in bookings}
    # The elderly share: floor(0.3 x 40) = 12 places go to the elderly first; with 30
    # elderly entrants at least 12 of them win.
    assert proof["elderly_places"] == 12
    elderly_won = sum(1 for e in won if e.elderly)
    assert elderly_won >= 12
    first_twelve = [c for c in proof["order"] if entries[c].elderly][:12]
    assert set(first_twelve) <= {w["entry_code"] for w in proof["winners"]}
    assert sum(1 for e in entries.values() if e.elderly) == 30
    # Waiting lists in draw order: each slot's line is the losers who named it, in the
    # order of the draw.
    rank = {code: i for i, code in enumerate(proof["order"])}
    by_resident = {e.resident_id: e.code for e in entries.values()}
    for slot in slots:
        line = db.session.scalars(
            select(WaitingListEntry.resident_id)
            .where(WaitingListEntry.slot_id == slot.id)
            .order_by(WaitingListEntry.id)
        ).all()
        drawn = [by_resident[r] for r in line]
        assert drawn == sorted(drawn, key=rank.get)
        named = [c for c in proof["waiting"] if slot.id in entries[c].slot_ids]
        assert drawn == named
    # Winners get confirmations, the others a result message; every entrant an entry one.
    kinds = Counter(db.session.scalars(select(Notice.kind)))
    assert kinds["confirmation"] == 40
    assert kinds["ballot_result"] == 260
    assert kinds["ballot_entry"] == 300
    # Places left open first-come: the slots are no longer held.
    assert db.session.scalar(select(func.count(Slot.id)).where(Slot.ballot_id.is_not(None))) == 0
    assert len(codes) == 300


def test_proof_recomputes_and_a_change_fails(app, open_ballot, ballot_day, make_nik, tmp_path):
    _, slots = ballot_day
    _enter_many(open_ballot, slots, make_nik, total=60, elderly=10)
    draw_ballot(open_ballot.id, _close(open_ballot))
    db.session.commit()
    proof, listed = proof_json(open_ballot), published_list(open_ballot)
    assert verify(proof, listed) == []
    proof_file, list_file = tmp_path / "proof.json", tmp_path / "list.txt"
    proof_file.write_text(json.dumps(proof))
    list_file.write_text(listed)

    def run(proof_path, list_path):
        return subprocess.run(
            [sys.executable, str(VERIFIER), str(proof_path), str(list_path)],
            capture_output=True,
            text=True,
            check=False,
        )

    ok = run(proof_file, list_file)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "proof holds" in ok.stdout
    # A changed list: one entry's preference swapped.
    lines = listed.splitlines(keepends=True)
    code, prefs, flag = lines[0].rstrip("\n").split(":")
    lines[0] = f"{code}:{prefs.split(',')[0]}9:{flag}\n"
    changed = tmp_path / "changed.txt"
    changed.write_text("".join(lines))
    assert run(proof_file, changed).returncode == 1
    assert verify(proof, "".join(lines)) != []
    # A dropped entry re-hashed by a cheat: the hash matches no more.
    # A changed seed: no longer the commitment, and another order.
    other = dict(proof, seed="0" * 64)
    other_file = tmp_path / "other.json"
    other_file.write_text(json.dumps(other))
    failed = run(other_file, list_file)
    assert failed.returncode == 1
    assert "commitment" in failed.stdout
    assert "the seed does not match the commitment" in verify(other, listed)
    # A changed winner.
    cheat = dict(proof, winners=list(reversed(proof["winners"])))
    assert "the winners differ" in verify(cheat, listed)


def test_seed_secret_until_drawn(app, client, open_ballot):
    answer = client.get(f"/api/v1/ballots/{open_ballot.id}/proof")
    assert answer.status_code == 200
    assert answer.json["seed"] is None
    assert answer.json["commitment"] == algorithm.commitment(open_ballot.seed)
    assert open_ballot.seed not in client.get(f"/ballots/{open_ballot.id}").text
    assert client.get(f"/api/v1/ballots/{open_ballot.id}/list").json["error"] == (
        "ballot_not_closed"
    )


def test_two_draws_at_once_yield_one_result(app, open_ballot, ballot_day, make_nik):
    _, slots = ballot_day
    _enter_many(open_ballot, slots, make_nik, total=50, elderly=5)
    ballot_id, at = open_ballot.id, _close(open_ballot)
    barrier = threading.Barrier(2)
    proofs, errors = [], []

    def draw():
        with app.app_context():
            try:
                barrier.wait()
                proofs.append(draw_ballot(ballot_id, at))
                db.session.commit()
            except Exception as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=draw) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(proofs) == 2 and proofs[0] == proofs[1]
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Booking.id))) == 40
    assert db.session.scalar(select(func.count(WaitingListEntry.id))) > 0
    waiting = db.session.scalar(select(func.count(WaitingListEntry.id)))
    expected = sum(
        len(e.slot_ids)
        for e in db.session.scalars(select(BallotEntry).where(BallotEntry.status == WAITING))
    )
    assert waiting == expected


def test_crash_midway_leaves_no_result(app, open_ballot, ballot_day, make_nik, monkeypatch):
    import ballots.draw

    _, slots = ballot_day
    _enter_many(open_ballot, slots, make_nik, total=50, elderly=5)

    def crash(*_args):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(ballots.draw, "_fill_waiting_lists", crash)
    with pytest.raises(RuntimeError):
        draw_ballot(open_ballot.id, _close(open_ballot))
    db.session.rollback()
    assert db.session.scalar(select(func.count(Booking.id))) == 0
    db.session.refresh(open_ballot)
    assert open_ballot.drawn_at is None and open_ballot.proof is None
    monkeypatch.undo()
    proof = draw_ballot(open_ballot.id, _close(open_ballot))
    db.session.commit()
    assert len(proof["winners"]) == 40

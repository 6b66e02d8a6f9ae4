"""Races a tester ran against ballots (issue 16) through real gunicorn workers and
processes, on both databases: entries racing the draw's freeze, one family card's
entries at once, two ``flask ballots draw`` processes at once."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from ballots.draw import draw_ballot
from ballots.models import BallotEntry
from ballots.proof import proof_json, published_list, verify
from extensions import db
from slots.models import Booking, WaitingListEntry
from tests.ballots.conftest import PHONE
from tests.ballots.test_races import server  # noqa: F401  (a fixture)
from tests.servers import VENV_BIN, post_json

pytestmark = pytest.mark.slow


def test_entries_racing_the_freeze(server, app, open_ballot, ballot_day, make_nik):  # noqa: F811
    """Entries stream in while the draw freezes the list: each entry answered 201 is
    in the published list and drawn; each one after is 409 ballot_not_open; nothing
    slips past the freeze (the draw would fail its own list check)."""
    _, slots = ballot_day
    ballot_id, at = open_ballot.id, open_ballot.closes_at + timedelta(seconds=1)
    ids = [s.id for s in slots]
    started, drawn = threading.Event(), threading.Event()
    answers: list[tuple[int, dict]] = []

    def enter(worker: int) -> None:
        # Each worker enters until the draw is done and three times more, so entries
        # are still coming when the list freezes, however the threads are scheduled.
        after = 0
        for i in range(400):
            if i == 2:
                started.set()
            if drawn.is_set():
                after += 1
                if after > 3:
                    return
            body = {"name": f"W {worker}", "nik": make_nik(), "phone": PHONE,
                    "preferences": [ids[(worker + i) % 4]]}  # fmt: skip
            answers.append(post_json(f"{server}/api/v1/ballots/{ballot_id}/entries", body))

    with ThreadPoolExecutor(max_workers=8) as pool:
        running = [pool.submit(enter, worker) for worker in range(8)]
        started.wait(30)
        time.sleep(0.1)
        try:
            proof = draw_ballot(ballot_id, at)
            db.session.commit()
        finally:
            drawn.set()
        for future in running:
            future.result()  # raises what a thread raised
    outcome = Counter(body.get("error", status) for status, body in answers)
    assert set(outcome) <= {201, "ballot_not_open"}, outcome
    entered = {body["entry_code"] for status, body in answers if status == 201}
    assert entered and outcome["ballot_not_open"] > 0, outcome
    assert set(proof["order"]) == entered
    db.session.expire_all()
    assert db.session.scalar(select(func.count(BallotEntry.id))) == len(entered)
    assert verify(proof_json(open_ballot), published_list(open_ballot)) == []


def test_one_family_card_racing(server, app, make_point, make_slot, make_nik):  # noqa: F811
    """At a point with the household limit, 12 members of one family (one KK, other
    NIKs) entering at once: one 201, the rest 409 already_entered."""
    from ballots.rounds import create_ballot
    from common.timeutil import local_date, utcnow

    point = make_point(code="JKT-910", household_limit=True)
    slot = make_slot(capacity=10, starts_in=2 * 1440, point=point)
    now = utcnow()
    ballot = create_ballot(
        point.code,
        local_date(slot.starts_at, point.timezone),
        now - timedelta(minutes=1),
        now + timedelta(hours=1),
    )
    db.session.commit()
    ballot_id, slot_id = ballot.id, slot.id
    kk = "3171040101200001"
    niks = [make_nik() for _ in range(12)]
    barrier = threading.Barrier(12)

    def enter(i: int) -> tuple[int, dict]:
        body = {
            "name": "Keluarga Uji",
            "nik": niks[i],
            "phone": PHONE,
            "kk": kk,
            "preferences": [slot_id],
        }
        barrier.wait()
        return post_json(f"{server}/api/v1/ballots/{ballot_id}/entries", body)

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(enter, range(12)))
    outcome = Counter(body.get("error", status) for status, body in answers)
    assert outcome == {201: 1, "already_entered": 11}, outcome
    db.session.expire_all()
    assert db.session.scalar(select(func.count(BallotEntry.id))) == 1


def test_two_draw_processes_at_once(app, ctx, open_ballot, ballot_day, make_nik, tmp_path):
    """``flask ballots draw`` in two processes at once: one result (the same proof
    printed twice), each winner booked once, each loser in line once per preference."""
    from tests.ballots.test_draw import _enter_many

    _, slots = ballot_day
    _enter_many(open_ballot, slots, make_nik, total=80, elderly=10)
    ballot_id = open_ballot.id
    # The processes' clock: past the close (the test clock ticks from its start).
    clock = (open_ballot.closes_at + timedelta(seconds=5)).isoformat()
    env = {
        **os.environ,
        "ANTRI_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "NIK_HASH_KEY": app.config["NIK_HASH_KEY"],
        "TICKET_KEY_DIR": app.config["TICKET_KEY_DIR"],
        "ANTRI_TEST_CLOCK": clock,
        "REDIS_URL": "",
        "FLASK_APP": "app",
    }
    command = [str(VENV_BIN / "flask"), "ballots", "draw", str(ballot_id)]
    runs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (_out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err.decode()
    lines = [out.decode().strip().splitlines()[-1] for out, _ in outputs]
    assert lines[0] == lines[1] and "40 won" in lines[0], lines
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Booking.id))) == 40
    waiting = db.session.scalar(select(func.count(WaitingListEntry.id)))
    db.session.refresh(open_ballot)
    proof = json.loads(open_ballot.proof)
    named = {e.code: e for e in db.session.scalars(select(BallotEntry))}
    assert waiting == sum(len(named[c].slot_ids) for c in proof["waiting"])

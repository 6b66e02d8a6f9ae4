"""An entry that runs as a transaction of its own (autocommit, issue 16's rush) leaves no
autocommit on a pooled connection, and never commits an entry without its message:
racing duplicates of one NIK, a point renamed mid-rush, the resident pages' form. With
warm text caches, so the requests really take that path. PostgreSQL only (SQLite
enters in separate statements)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event, select

from ballots.models import BallotEntry
from extensions import db
from slots.models import Notice
from tests.ballots.conftest import PHONE
from tests.ballots.test_races import server  # noqa: F401  (a fixture)
from tests.servers import post_json


def _pg():
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the one statement runs on PostgreSQL only")


def _every_entry_has_its_message() -> None:
    db.session.expire_all()
    codes = set(db.session.scalars(select(BallotEntry.code)))
    refs = list(db.session.scalars(select(Notice.ref).where(Notice.kind == "ballot_entry")))
    assert codes
    assert sorted(refs) == sorted(f"ballot-entry:{code}" for code in codes)


def test_no_autocommit_leaks_to_the_next_checkout(app, client, open_ballot, ballot_day, make_nik):
    """After autocommitted entries (one taken, one refused), every pooled connection is
    back in the usual mode: the pool resets the isolation level on return."""
    _pg()
    _, slots = ballot_day
    url = f"/api/v1/ballots/{open_ballot.id}/entries"
    slot_id = slots[0].id
    seen: list[bool] = []

    def on_checkout(dbapi_conn, _rec, _proxy):
        seen.append(dbapi_conn.autocommit)

    def enter(nik):
        db.session.commit()
        body = {"name": "Siti", "nik": nik, "phone": PHONE, "preferences": [slot_id]}
        return client.post(url, json=body)

    assert enter(make_nik()).status_code == 201  # renders the text
    db.session.remove()
    event.listen(db.engine, "checkout", on_checkout)
    try:
        nik = make_nik()
        assert enter(nik).status_code == 201  # autocommit
        db.session.remove()
        r = enter(nik)  # autocommit, refused
        assert r.status_code == 409, r.get_json()
        db.session.remove()
        # every pooled connection, checked out at once
        conns = [db.engine.raw_connection() for _ in range(db.engine.pool.size())]
        modes = [c.driver_connection.autocommit for c in conns]
        for c in conns:
            c.close()
    finally:
        event.remove(db.engine, "checkout", on_checkout)
    assert not any(seen), seen
    assert not any(modes), modes


def _warm(base, ballot_id, slot_id, make_nik, n=48):
    """``n`` entries from 8 threads, so every worker has rendered the message text."""

    def one(i):
        body = {"name": f"W {i}", "nik": make_nik(), "phone": PHONE, "preferences": [slot_id]}
        return post_json(f"{base}/api/v1/ballots/{ballot_id}/entries", body)[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(n))) == {201}


@pytest.mark.slow
def test_racing_duplicates_warm(server, open_ballot, ballot_day, make_nik):  # noqa: F811
    """16 requests of one NIK at once, three times, through gunicorn with every worker's
    text cache warm: one 201 and 15 already_entered each time, each entry with its
    one message."""
    _pg()
    _, slots = ballot_day
    ballot_id = open_ballot.id
    ids = [s.id for s in slots]
    _warm(server, ballot_id, ids[1], make_nik)
    for _round in range(3):
        nik = make_nik()
        barrier = threading.Barrier(16)

        def enter(i, nik=nik, barrier=barrier):
            body = {"name": f"S {i}", "nik": nik, "phone": PHONE, "preferences": [ids[0]]}
            barrier.wait()
            return post_json(f"{server}/api/v1/ballots/{ballot_id}/entries", body)

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(enter, range(16)))
        outcome = Counter(body.get("error", status) for status, body in answers)
        assert outcome == {201: 1, "already_entered": 15}, outcome
    _every_entry_has_its_message()


@pytest.mark.slow
def test_rename_mid_rush_warm(server, open_ballot, ballot_day, make_nik):  # noqa: F811
    """Six streams of entries while the point is renamed six times: every entry is taken
    (201), and none lacks its message (a stale cached text makes the one statement
    write nothing, and the entry is made in one ordinary transaction)."""
    _pg()
    point, slots = ballot_day
    ballot_id = open_ballot.id
    ids = [s.id for s in slots]
    _warm(server, ballot_id, ids[1], make_nik)
    stop = threading.Event()
    answers = []

    def stream(w):
        i = 0
        while not stop.is_set() and i < 300:
            i += 1
            body = {
                "name": f"R {w}",
                "nik": make_nik(),
                "phone": PHONE,
                "preferences": [ids[i % 4]],
            }
            answers.append(post_json(f"{server}/api/v1/ballots/{ballot_id}/entries", body))

    with ThreadPoolExecutor(max_workers=6) as pool:
        running = [pool.submit(stream, w) for w in range(6)]
        for k in range(6):
            time.sleep(0.15)
            point.name = f"Pasar Nama {k}"
            db.session.commit()
        time.sleep(0.2)
        stop.set()
        for r in running:
            r.result()
    statuses = Counter(s for s, _ in answers)
    assert set(statuses) == {201}, statuses
    _every_entry_has_its_message()


def test_html_form_autocommit_paths(app, client, open_ballot, ballot_day, make_nik):
    """The resident pages' form takes the same path: entries 303, repeats 409, before and
    after a rename; three entries, three messages."""
    _pg()
    point, slots = ballot_day
    app.config["WTF_CSRF_ENABLED"] = False
    url, slot_id = f"/ballots/{open_ballot.id}/enter", slots[0].id

    def enter(nik):
        db.session.commit()
        return client.post(
            url, data={"name": "Siti", "nik": nik, "phone": PHONE, "first": str(slot_id)}
        )

    assert enter(make_nik()).status_code == 303
    nik = make_nik()
    assert enter(nik).status_code == 303
    assert enter(nik).status_code == 409
    point.name = "Pasar Ganti"
    db.session.commit()
    nik2 = make_nik()
    assert enter(nik2).status_code == 303
    assert enter(nik2).status_code == 409
    db.session.commit()
    codes = set(db.session.scalars(select(BallotEntry.code)))
    refs = set(db.session.scalars(select(Notice.ref).where(Notice.kind == "ballot_entry")))
    assert refs == {f"ballot-entry:{c}" for c in codes} and len(codes) == 3

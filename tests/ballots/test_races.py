"""Racing requests against real gunicorn workers (issue 16 §2 and the Tests section):
duplicate entries of one NIK at once -> one 201, the rest 409 already_entered; a
booking racing the ballot's creation either is made before (and the ballot refused)
or refused ``ballot_running``; never both."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from ballots.models import BallotEntry
from common.timeutil import utcnow
from extensions import db
from slots.models import Booking
from tests.ballots.conftest import PHONE
from tests.servers import gunicorn, post_json

pytestmark = pytest.mark.slow


@pytest.fixture
def server(app, ctx, tmp_path):
    """The app under gunicorn (4 workers x 4 threads) on the backend under test."""
    env = {
        "ANTRI_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "NIK_HASH_KEY": app.config["NIK_HASH_KEY"],
        "TICKET_KEY_DIR": app.config["TICKET_KEY_DIR"],
        "RATELIMIT_ENABLED": "false",
        "REDIS_URL": "",
    }
    with gunicorn(env, workers=4, threads=4, log=tmp_path / "gunicorn.log") as url:
        yield url


def test_racing_duplicate_entries_of_one_nik(server, open_ballot, ballot_day, make_nik):
    _, slots = ballot_day
    nik, slot_id, ballot_id = make_nik(), slots[0].id, open_ballot.id
    barrier = threading.Barrier(16)

    def enter(i: int) -> tuple[int, dict]:
        body = {"name": f"Siti {i}", "nik": nik, "phone": PHONE, "preferences": [slot_id]}
        barrier.wait()
        return post_json(f"{server}/api/v1/ballots/{ballot_id}/entries", body)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(enter, range(16)))
    outcome = Counter(body.get("error", status) for status, body in answers)
    assert outcome == {201: 1, "already_entered": 15}, outcome
    db.session.expire_all()
    assert db.session.scalar(select(func.count(BallotEntry.id))) == 1
    # Exactly one message with the entry code: the refused ones wrote none.
    from slots.models import Notice

    [entered] = [body for status, body in answers if status == 201]
    notices = db.session.scalars(select(Notice).where(Notice.kind == "ballot_entry")).all()
    assert [n.ref for n in notices] == [f"ballot-entry:{entered['entry_code']}"]


def test_booking_racing_ballot_creation(server, app, ballot_day, make_nik):
    from ballots.errors import SlotsHaveBookings
    from ballots.rounds import create_ballot

    point, slots = ballot_day
    ids, code, day = [s.id for s in slots], point.code, slots[0].starts_at.date()
    niks = [make_nik() for _ in range(8)]
    barrier = threading.Barrier(9)
    made: list[object] = []

    def book(i: int) -> tuple[int, dict]:
        body = {"slot_id": ids[i % 4], "name": "Budi", "nik": niks[i], "phone": PHONE}
        barrier.wait()
        return post_json(f"{server}/api/v1/bookings", body)

    def create() -> None:
        with app.app_context():
            now = utcnow()
            barrier.wait()
            try:
                create_ballot(code, day, now, now + timedelta(hours=1))
                db.session.commit()
                made.append(True)
            except SlotsHaveBookings:
                db.session.rollback()
                made.append(False)
            finally:
                db.session.remove()

    creator = threading.Thread(target=create)
    creator.start()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(book, range(8)))
    creator.join()
    booked = sum(1 for status, _ in answers if status == 201)
    refused = Counter(body.get("error") for status, body in answers if status != 201)
    db.session.expire_all()
    bookings = db.session.scalar(select(func.count(Booking.id)))
    assert bookings == booked
    if made == [True]:
        assert booked == 0 and refused == {"ballot_running": 8}
    else:
        assert made == [False] and booked >= 1


def test_entries_racing_the_freeze(server, app, open_ballot, ballot_day, make_nik):
    """Entries (distinct NIKs, 12 clients) racing the freeze of the list inside the
    window (``ballots.draw.freeze``: its table lock against the entries' inserts):
    every entry answered 201 is in the frozen list, no entry is written after it
    (the list hashes as frozen), and every entry refused is refused ballot_not_open."""
    from ballots.algorithm import canonical_list, list_hash
    from ballots.draw import as_listed, freeze, listed_entries
    from ballots.models import Ballot
    from common.locking import lock_row

    _, slots = ballot_day
    ballot_id, ids = open_ballot.id, [s.id for s in slots]
    niks = [[make_nik() for _ in range(400)] for _ in range(12)]
    frozen = threading.Event()
    after_freeze = threading.Event()
    answers: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def client(mine: list[str]) -> None:
        for i, nik in enumerate(mine):
            body = {"name": "Siti", "nik": nik, "phone": PHONE, "preferences": ids[: 1 + i % 3]}
            status, answer = post_json(f"{server}/api/v1/ballots/{ballot_id}/entries", body)
            with lock:
                answers.append((status, answer.get("error", ""), answer.get("entry_code", "")))
            if after_freeze.is_set():
                return

    threads = [threading.Thread(target=client, args=(mine,)) for mine in niks]
    for thread in threads:
        thread.start()
    while True:  # freeze once entries are flowing
        with lock:
            if sum(1 for status, _, _ in answers if status == 201) >= 30:
                break
        threading.Event().wait(0.01)
    ballot = db.session.get(Ballot, ballot_id)
    lock_row(Ballot, ballot.id, Ballot.drawn_at)
    freeze(ballot, utcnow())
    db.session.commit()
    frozen.set()
    threading.Event().wait(0.3)  # entries keep coming after the freeze
    after_freeze.set()
    for thread in threads:
        thread.join()

    db.session.expire_all()
    ballot = db.session.get(Ballot, ballot_id)
    entries = listed_entries(ballot)
    accepted = {code for status, _, code in answers if status == 201}
    refused = Counter(error for status, error, _ in answers if status != 201)
    assert accepted and refused, (len(accepted), refused)  # the race took place
    assert set(refused) == {"ballot_not_open"}, refused
    assert {entry.code for entry in entries} == accepted
    assert list_hash(canonical_list(as_listed(e) for e in entries)) == ballot.list_hash

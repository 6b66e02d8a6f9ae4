"""The one-statement PostgreSQL entry and the separate statements give the same answer.

``ballots.entering.enter_ballot`` enters in one statement on PostgreSQL
(``_ENTER_ON_POSTGRESQL``) and in separate statements on SQLite (and on PostgreSQL when
``ONE_STATEMENT`` is off). These tests run both on the same cases, each from the same
committed state, and compare every outcome: the status or error code, the entry row
(its elderly flag, preferences) and the entry message's text. And the elderly flag the
one statement computes from ``elderly_bounds`` agrees with ``is_elderly``.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import event, func, select, text

from ballots import entering
from ballots.age import elderly_bounds, is_elderly
from ballots.entering import _ELDERLY_SQL, enter_ballot
from ballots.models import BallotEntry
from common.errors import DomainError
from extensions import db
from slots.booking import place_booking
from slots.models import Notice, Resident
from tests.ballots.conftest import PHONE

KK = "3171041234560001"


def _outcome(ballot_id: int, nik: str, preferences: list[int], **options) -> dict:
    """Enter once in a transaction, note what it did, and roll it back."""
    entries = db.session.scalar(select(func.count(BallotEntry.id)))
    try:
        entered = enter_ballot(ballot_id, "Siti Aminah", nik, PHONE, preferences, **options)
    except DomainError as error:
        db.session.rollback()
        return {"error": error.code}
    entry = db.session.get(BallotEntry, entered.id)
    notice = db.session.scalar(select(Notice).where(Notice.ref == f"ballot-entry:{entry.code}"))
    found = {
        "status": entered.status,
        "entries": db.session.scalar(select(func.count(BallotEntry.id))) - entries,
        "elderly": entry.elderly,
        "preferences": entry.preferences,
        "kk": entry.kk_hash is not None,
        "message": notice.body.replace(entry.code, "CODE"),
        "message_to": (notice.to_phone, notice.kind, notice.status, notice.language),
    }
    db.session.rollback()
    return found


def _both(monkeypatch, *args, **options) -> dict:
    """The outcome on both paths, asserted equal."""
    monkeypatch.setattr(entering, "ONE_STATEMENT", True)
    one = _outcome(*args, **options)
    again = _outcome(*args, **options)  # the message's text now rendered from the cache
    monkeypatch.setattr(entering, "ONE_STATEMENT", False)
    separate = _outcome(*args, **options)
    assert one == again == separate
    return one


def test_both_paths_agree(app, monkeypatch, open_ballot, ballot_day, make_nik, make_slot):
    point, slots = ballot_day
    ids = [slot.id for slot in slots]
    ballot_id = open_ballot.id
    young = _both(monkeypatch, ballot_id, make_nik("120590"), ids[:2])
    assert young["status"] == "entered" and young["entries"] == 1
    assert (young["elderly"], young["preferences"]) == (False, f"{ids[0]},{ids[1]}")
    assert point.name in young["message"] and "CODE" in young["message"]
    old = _both(monkeypatch, ballot_id, make_nik("520350"), ids[2:3], language="en")
    assert (old["elderly"], old["message_to"][3]) == (True, "en")
    assert "entered the ballot" in old["message"]
    assert _both(monkeypatch, ballot_id, make_nik(), [ids[0], 999999]) == {
        "error": "invalid_preferences"
    }
    assert _both(monkeypatch, 999999, make_nik(), ids[:1]) == {"error": "ballot_not_found"}
    before = open_ballot.opens_at - timedelta(minutes=1)
    assert _both(monkeypatch, ballot_id, make_nik(), ids[:1], now=before) == {
        "error": "ballot_not_open"
    }
    # One NIK entered already (committed): already_entered on both paths.
    entered = make_nik()
    enter_ballot(ballot_id, "Siti", entered, PHONE, ids[:1])
    db.session.commit()
    assert _both(monkeypatch, ballot_id, entered, ids[1:2]) == {"error": "already_entered"}
    # A NIK holding BOOKING_LIMIT_PER_NIK bookings near the day: limit_reached.
    other = make_slot(capacity=5, starts_in=2 * 1440 + 200)
    busy = make_nik()
    place_booking(other.id, "Budi", busy, PHONE)
    db.session.commit()
    assert _both(monkeypatch, ballot_id, busy, ids[:1]) == {"error": "limit_reached"}
    # The point's name changed since the message was last rendered: the new name.
    point.name = "Pasar Baru Uji"
    db.session.commit()
    renamed = _both(monkeypatch, ballot_id, make_nik(), ids[:1])
    assert "Pasar Baru Uji" in renamed["message"]
    # A frozen list takes no entry.
    open_ballot.frozen_at = open_ballot.opens_at
    db.session.commit()
    assert _both(monkeypatch, ballot_id, make_nik(), ids[:1]) == {"error": "ballot_not_open"}


def test_both_paths_at_a_household_point(app, monkeypatch, open_ballot, ballot_day, make_nik):
    point, slots = ballot_day
    point.household_limit = True
    db.session.commit()
    ids = [slot.id for slot in slots]
    assert _both(monkeypatch, open_ballot.id, make_nik(), ids[:1]) == {"error": "invalid_kk"}
    first = _both(monkeypatch, open_ballot.id, make_nik(), ids[:1], kk=KK)
    assert (first["status"], first["kk"]) == ("entered", True)
    enter_ballot(open_ballot.id, "Siti", make_nik(), PHONE, ids[:1], kk=KK)
    db.session.commit()
    assert _both(monkeypatch, open_ballot.id, make_nik(), ids[:1], kk=KK) == {
        "error": "already_entered"
    }
    assert db.session.scalar(select(func.count(Resident.id))) >= 1


def test_elderly_in_sql_is_is_elderly(app, ctx):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the one statement runs on PostgreSQL only")
    statement = text(f"SELECT {_ELDERLY_SQL} FROM (SELECT CAST(:day AS date) AS day) AS admitted")  # noqa: S608
    births = ["120566", "290264", "690264", "290200", "010100", "311299", "150866", "010126"]
    days = [date(2026, 12, 5), date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)]
    days += [date(2026, 8, 14), date(2026, 8, 15), date(2060, 2, 28), date(2060, 2, 29)]
    days += [date(2060, 3, 1)]
    days += [date(2100, 2, 28), date(2100, 3, 1)]
    checked = 0
    for born in births:
        nik = f"317104{born}0001"
        bounds = dict(zip(("born", "sixty", "sixty_1900"), elderly_bounds(nik), strict=True))
        for day in days:
            found = db.session.scalar(statement, {"day": day, **bounds})
            assert found == is_elderly(nik, day), (nik, day)
            checked += 1
    assert checked == 88


def test_an_entry_alone_commits_by_itself(app, client, open_ballot, ballot_day, make_nik):
    """On PostgreSQL an entry that is all its request writes runs as a transaction of its
    own (autocommit: no BEGIN, no COMMIT) once the message's text is known to the app;
    the entry never commits without its message, also when the ballot changed since the
    text was rendered."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the one statement runs on PostgreSQL only")
    point, slots = ballot_day
    url, slot_id = f"/api/v1/ballots/{open_ballot.id}/entries", slots[0].id
    modes: list[bool] = []

    def note_mode(conn, _cursor, statement, *_args) -> None:
        if "INSERT INTO ballot_entry" in statement:
            modes.append(conn.connection.dbapi_connection.autocommit)

    def enter(nik: str) -> tuple[int, dict]:
        body = {"name": "Siti Aminah", "nik": nik, "phone": PHONE, "preferences": [slot_id]}
        db.session.commit()  # the request's session starts with no transaction, as served
        answer = client.post(url, json=body)
        return answer.status_code, answer.get_json()

    def message_of(code: str) -> list[str]:
        db.session.commit()
        return list(
            db.session.scalars(select(Notice.body).where(Notice.ref == f"ballot-entry:{code}"))
        )

    app.extensions.pop(entering._TEXTS_KEY, None)  # no text rendered yet in this app
    event.listen(db.engine, "before_cursor_execute", note_mode)
    try:
        first = enter(make_nik())
        second_nik = make_nik()
        second = enter(second_nik)
        again = enter(second_nik)
        point.name = "Pasar Senen Baru"  # the cached text now names the old name
        db.session.commit()
        renamed = enter(make_nik())
    finally:
        event.remove(db.engine, "before_cursor_execute", note_mode)
    assert (first[0], second[0], again[0], renamed[0]) == (201, 201, 409, 201)
    assert again[1]["error"] == "already_entered"
    # First: no text known, the message a statement more in the same transaction.
    # Then autocommit; the rename makes the one statement write nothing, and the
    # entry is made by separate statements in one transaction.
    assert modes == [False, True, True, True, False]
    assert [len(message_of(answer[1]["entry_code"])) for answer in (first, second)] == [1, 1]
    (text_,) = message_of(renamed[1]["entry_code"])
    assert "Pasar Senen Baru" in text_ and renamed[1]["entry_code"] in text_
    db.session.commit()
    assert db.session.scalar(select(func.count(BallotEntry.id))) == 3

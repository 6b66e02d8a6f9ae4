"""Entering a ballot (issue 16 §2): one resident's entry, under the booking's rules.

An entry is one transaction of few statements, because entering must take a rush
(``bench/ballot_entry.py``): the ballot row read FOR SHARE (the draw's freeze waits for
every entry under way, and an entry after the freeze sees it: ``common.locking``), the
preferred slots checked, the resident's lock row (``slots.locks.lock_resident``: one
NIK's requests in turn), the per-NIK limit counted as a booking's, the entry written
(UNIQUE per ballot and resident, and per family card where the point limits
households: a second entry writes nothing and is told ``already_entered``), and the
message with the entry code and the time of the draw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ballots.errors import (
    AlreadyEntered,
    BallotNotFound,
    BallotNotOpen,
    EntryNotFound,
    InvalidPreferences,
)
from ballots.models import ENTERED, Ballot, BallotEntry
from common.links import public_url
from common.locking import execute_locking
from common.timeutil import local_day_bounds, utcnow, when_text
from extensions import db
from notify.outbox import queue_message
from slots.availability import valid_id
from slots.codes import match_phone, new_booking_code, normalise_code
from slots.errors import IdempotencyKeyReused, InvalidIdempotencyKey
from slots.identity import resident_input
from slots.limits import check_limits, household_hash
from slots.locks import lock_resident
from slots.models import IdempotencyKey, MarketPoint, Slot

ELDERLY_AGE = 60  # years, on the ballot's date (issue 16 §3)
MAX_PREFERENCES = 3

# The ballot and its point, read FOR SHARE: compatible with other entries, not with the
# draw's row lock (``ballots.draw``). On SQLite a no-op: writers are serialised there,
# and the entry's insert re-checks the window (``_INSERT_WHERE_OPEN``).
_BALLOT_FOR_ENTRY = (
    select(
        Ballot.id,
        Ballot.day,
        Ballot.opens_at,
        Ballot.closes_at,
        Ballot.frozen_at,
        Ballot.drawn_at,
        Ballot.market_point_id,
        MarketPoint.household_limit,
        MarketPoint.timezone,
        MarketPoint.name,
    )
    .join(MarketPoint, Ballot.market_point_id == MarketPoint.id)
    .where(Ballot.id == bindparam("ballot_id"))
    .with_for_update(read=True, of=Ballot)
)

_SLOTS_OF = select(
    Slot.id, Slot.starts_at, Slot.market_point_id, Slot.ballot_id, Slot.closed_at
).where(Slot.id.in_(bindparam("ids", expanding=True)))


def birth_date(nik: str, on_day: date) -> date | None:
    """The birth date in NIK digits 7-12 (DDMMYY; a woman's day has 40 added).

    The two-digit year is read in the century that puts the birth on or before
    ``on_day`` (2000+YY when that is not after it, else 1900+YY): so a NIK of YY=30
    read in 2026 is 1930. A person over 100 is read as a child (rare; documented).
    Returns None for digits that are no date (``validate_nik`` refuses those first).
    """
    dd, mm, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    if dd > 40:
        dd -= 40
    for century in (2000, 1900):
        try:
            born = date(century + yy, mm, dd)
        except ValueError:
            return None
        if born <= on_day:
            return born
    return None


def is_elderly(nik: str, on_day: date) -> bool:
    """True when the NIK's holder is ELDERLY_AGE (60) or older on local date ``on_day``
    (issue 16 §3: the priority share)."""
    born = birth_date(nik, on_day)
    if born is None:
        return False
    age = on_day.year - born.year - ((on_day.month, on_day.day) < (born.month, born.day))
    return age >= ELDERLY_AGE


def _preferences(raw: object) -> list[int]:
    """One to three distinct slot ids, as ints. Raises InvalidPreferences (422)."""
    if not isinstance(raw, list | tuple) or not 1 <= len(raw) <= MAX_PREFERENCES:
        raise InvalidPreferences()
    if not all(valid_id(item) for item in raw) or len(set(raw)) != len(raw):
        raise InvalidPreferences()
    return list(raw)


def enter_ballot(
    ballot_id: int,
    name: str,
    nik: str,
    phone: str,
    preferences: list[int],
    kk: str = "",
    language: str = "id",
    now: datetime | None = None,
) -> Entered:
    """Enter resident (name, NIK, phone, family card) in ballot ``ballot_id`` with
    ``preferences``, slot ids of the ballot's day in order of preference (issue 16 §2).

    Args: as ``slots.booking.place_booking``; language "id" or "en", of the messages;
      now, aware UTC (default the clock).
    Returns: the new entry as ``Entered`` (written; status ``entered``), with a pending
      ``ballot_entry`` message telling the entry code and the time of the draw.
    Raises: InvalidName, InvalidNIK, InvalidPhone, InvalidLanguage, InvalidKK,
      InvalidPreferences (422); BallotNotFound (404); BallotNotOpen (409, outside the
      window or once the list is frozen); LimitReached, HouseholdLimitReached (409, as
      a booking of the day's first preferred slot would be); AlreadyEntered (409).
    """
    now = now or utcnow()
    if not valid_id(ballot_id):
        raise BallotNotFound()
    person = resident_input(name, nik, phone, language)
    wanted = _preferences(preferences)
    ballot = execute_locking("ballot", _BALLOT_FOR_ENTRY, {"ballot_id": ballot_id}).first()
    if ballot is None:
        raise BallotNotFound()
    if not _open(ballot, now):
        raise BallotNotOpen()
    slots = {row.id: row for row in db.session.execute(_SLOTS_OF, {"ids": wanted})}
    # A slot the market closed meanwhile (issue 8) gives no place at the draw.
    if any(
        slots.get(i) is None or slots[i].ballot_id != ballot.id or slots[i].closed_at is not None
        for i in wanted
    ):
        raise InvalidPreferences()
    person = replace(person, kk_hash=household_hash(ballot, kk))
    resident_id = lock_resident(person.nik_hash, person.nik_last4)
    check_limits(resident_id, person.kk_hash, slots[wanted[0]].starts_at)
    code = new_booking_code()
    digits = re.sub(r"[\s.\-]", "", nik)
    entry_id = db.session.execute(
        _insert_entry(),
        {
            "ballot_id": ballot.id,
            "code": code,
            "resident_id": resident_id,
            "name": person.name,
            "nik_last4": person.nik_last4,
            "phone": person.phone,
            "language": person.language,
            "kk_hash": person.kk_hash,
            "preferences": ",".join(str(i) for i in wanted),
            "elderly": is_elderly(digits, ballot.day),
            "status": ENTERED,
            "created_at": now,
            "now": now,
        },
    ).scalar()
    if entry_id is None:
        if db.session.scalar(select(Ballot.frozen_at).where(Ballot.id == ballot.id)):
            raise BallotNotOpen()
        raise AlreadyEntered()
    entry = Entered(entry_id, code, ENTERED, person.phone, person.language)
    _tell_entered(entry, ballot, now)
    return entry


@dataclass(frozen=True)
class Entered:
    """An entry just made, as plain values (no second query for the ORM object)."""

    id: int
    code: str
    status: str
    phone: str
    language: str


def _open(ballot, now: datetime) -> bool:
    """True when ``ballot`` (a row) takes entries at ``now``."""
    return ballot.frozen_at is None and ballot.opens_at <= now < ballot.closes_at


_ENTRY_COLUMNS = (
    "ballot_id",
    "code",
    "resident_id",
    "name",
    "nik_last4",
    "phone",
    "language",
    "kk_hash",
    "preferences",
    "elderly",
    "status",
    "created_at",
)


def _insert_entry():
    """INSERT ... SELECT from the ballot row while its list is not frozen (SQLite: the
    insert holds the write lock, so a freeze committed meanwhile is seen), ON CONFLICT
    DO NOTHING (a second entry of the NIK or family card writes nothing); RETURNING id."""
    dialect = db.session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    values = select(*(bindparam(name) for name in _ENTRY_COLUMNS)).where(
        select(Ballot.id)
        .where(Ballot.id == bindparam("ballot_id"), Ballot.frozen_at.is_(None))
        .exists()
    )
    return (
        make(BallotEntry.__table__)
        .from_select(list(_ENTRY_COLUMNS), values)
        .on_conflict_do_nothing()
        .returning(BallotEntry.__table__.c.id)
    )


def _tell_entered(entry: Entered, ballot, now: datetime) -> None:
    """Queue the ``ballot_entry`` message: the entry code and the time of the draw,
    in the resident's language (rendered now)."""
    if not entry.phone:
        return
    link = public_url("ballots.page", ballot_id=ballot.id)
    with force_locale(entry.language or "id"):
        draw = when_text(ballot.closes_at, ballot.timezone, zone_name=True)
        text = _(
            "Antri: you entered the ballot of %(point)s for %(day)s. Entry code %(code)s. "
            "The draw is at %(draw)s; see your result: %(link)s",
            point=ballot.name,
            day=ballot.day.strftime("%d-%m-%Y"),
            code=entry.code,
            draw=draw,
            link=link,
        )
    queue_message(
        entry.phone,
        text,
        kind="ballot_entry",
        ref=f"ballot-entry:{entry.code}",
        language=entry.language,
        now=now,
    )


def enter_ballot_once(
    key: str, fingerprint: str, ballot_id: int, *args, **kwargs
) -> tuple[Entered | BallotEntry, bool]:
    """``enter_ballot`` under an Idempotency-Key, as ``slots.booking.book_slot_once``
    does for a booking: the first request with ``key`` enters, a repeat with the same
    ``fingerprint`` returns that entry (True: replayed).

    Raises: InvalidIdempotencyKey (422), IdempotencyKeyReused (409: another request
      under the key), and whatever ``enter_ballot`` raises (then the key is not kept).
    """
    if not re.fullmatch(r"[\x21-\x7e]{1,200}", key or ""):
        raise InvalidIdempotencyKey()
    now = kwargs.get("now") or utcnow()
    dialect = db.session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    claimed = db.session.execute(
        make(IdempotencyKey)
        .values(key=key, request_hash=fingerprint, created_at=now)
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.key])
        .returning(IdempotencyKey.id)
    ).scalar_one_or_none()
    if claimed is None:
        previous = db.session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key))
        if previous.request_hash != fingerprint or previous.ballot_entry_id is None:
            raise IdempotencyKeyReused()
        return db.session.get(BallotEntry, previous.ballot_entry_id), True
    entry = enter_ballot(ballot_id, *args, **kwargs)
    db.session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claimed)
        .values(ballot_entry_id=entry.id)
        .execution_options(synchronize_session=False)
    )
    return entry, False


def find_entry(ballot_id: int, code: str, phone: str) -> BallotEntry:
    """The entry of ballot ``ballot_id`` with entry code ``code`` made with ``phone``.

    Raises: EntryNotFound (404) for any mismatch (one answer: it reveals no codes)."""
    canonical = normalise_code(code)
    found = None
    if canonical is not None and valid_id(ballot_id):
        found = db.session.scalar(
            select(BallotEntry).where(
                BallotEntry.ballot_id == ballot_id, BallotEntry.code == canonical
            )
        )
    return match_phone(found, phone, EntryNotFound)


def day_bounds(ballot: Ballot) -> tuple[datetime, datetime]:
    """The UTC bounds of the ballot's local day."""
    return local_day_bounds(ballot.day, ballot.market_point.timezone)

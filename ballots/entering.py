"""Entering a ballot (issue 16 §2): one resident's entry, under the booking's rules.

Entering must take a rush (``bench/ballot_entry.py``: entries/s >= 0.6 x /healthz), so
on PostgreSQL an entry is one statement (``_ENTER_ON_POSTGRESQL``, as a booking's
``slots.booking._BOOK_ON_POSTGRESQL``): the ballot's window and frozen list, the
preferred slots, the resident's lock row (``slots.locks.lock_resident``'s upsert: one
NIK's requests in turn), the per-NIK limit counted as a booking's, the entry written
(UNIQUE per ballot and resident: a second entry writes nothing and is told
``already_entered``) and the message with the entry code and the time of the draw. At
points with a household limit, and when a request of the same NIK committed while the
statement waited for the resident's lock, the rules continue one statement each, as on
SQLite. No entry is taken after the list is frozen: the freeze locks the entry table
against inserts (``ballots.draw.freeze``), and the insert re-checks ``frozen_at`` in a
snapshot taken after that lock. When the entry is all its request writes, that statement
runs as a transaction of its own (``common.transactions.single_statement_connection``):
no BEGIN and no COMMIT, two round trips fewer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import (
    Boolean,
    Date,
    Integer,
    String,
    bindparam,
    column,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ballots.age import elderly_bounds, is_elderly
from ballots.errors import (
    AlreadyEntered,
    BallotNotFound,
    BallotNotOpen,
    EntryNotFound,
    InvalidPreferences,
)
from ballots.models import ENTERED, Ballot, BallotEntry
from common.db import compact_sql
from common.links import public_url
from common.timeutil import UTCDateTime, local_day_bounds, utcnow, when_text
from common.transactions import leave_single_statement, single_statement_connection
from extensions import db
from notify.outbox import note_queued, queue_message
from slots.availability import valid_id
from slots.codes import match_phone, new_booking_code, normalise_code
from slots.errors import IdempotencyKeyReused
from slots.idempotency import claim_key, record_result
from slots.identity import ResidentInput, resident_input
from slots.limits import (
    check_limits,
    counted_between,
    household_hash,
    limit_reached,
    limit_window,
    nik_limit,
)
from slots.locks import lock_resident
from slots.models import NOTICE_PENDING, MarketPoint, Slot

MAX_PREFERENCES = 3

# The ballot and its point (the separate statements' path). No row lock: the entry's
# insert re-checks ``frozen_at`` (``_insert_entry``), and the freeze keeps inserts out
# (``ballots.draw.freeze``).
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
    # A point deactivated since (hidden from residents) takes no entries: not found.
    .where(Ballot.id == bindparam("ballot_id"), MarketPoint.active.is_(True))
)

_SLOTS_OF = select(
    Slot.id, Slot.starts_at, Slot.market_point_id, Slot.ballot_id, Slot.closed_at
).where(Slot.id.in_(bindparam("ids", expanding=True)))


def _preferences(raw: object) -> list[int]:
    """One to three distinct slot ids, as ints. Raises InvalidPreferences (422)."""
    if not isinstance(raw, list | tuple) or not 1 <= len(raw) <= MAX_PREFERENCES:
        raise InvalidPreferences()
    if not all(valid_id(item) for item in raw) or len(set(raw)) != len(raw):
        raise InvalidPreferences()
    return list(raw)


# ``elderly_bounds`` in SQL, on the ballot's day (NULL: no such date, so not elderly).
_ELDERLY_SQL = (
    "COALESCE(admitted.day >= CAST(:sixty AS date) OR (admitted.day < CAST(:born AS date)"
    " AND admitted.day >= CAST(:sixty_1900 AS date)), false)"
)

# The per-NIK limit's count (``slots.limits.counted_between``) around the first
# preferred slot's start, as a booking of that slot would count it.
_HELD_WHERE = str(
    counted_between(
        literal_column("admitted.first_starts - CAST(:window AS interval)"),
        literal_column("admitted.first_starts + CAST(:window AS interval)"),
    ).compile(compile_kwargs={"literal_binds": True})
)

# PostgreSQL: the whole entry in one statement, as ``slots.booking._BOOK_ON_POSTGRESQL``
# books. ``admitted`` is the ballot when it takes this entry now: inside its window, its
# list not frozen (the freeze's table lock is had before this statement's snapshot:
# ``ballots.draw.freeze``), every preferred slot one of its slots, its point without a
# household limit. Only then the resident's lock row is upserted (its row lock, bumping
# ``lock_version``), the limit counted, and the entry inserted (ON CONFLICT DO NOTHING:
# a second entry of the NIK writes nothing). The count is trusted ("fresh") only when
# the upsert returns the row this statement's snapshot saw at the version it saw plus
# its own bump (no request of this NIK committed while it waited for the lock), else
# ``enter_ballot`` counts again in statements of its own. The message is written here,
# with the entry, from ``:body``: the text rendered from the ballot's facts this process
# saw last (``_entry_text_guess``). When the ballot's facts have changed since
# (``text_current`` false) the statement writes no entry either and ``enter_ballot``
# enters in statements of its own, the text rendered afresh; with no ``:body`` (no
# phone, or no text rendered yet) it writes the entry alone. So an entry never commits
# without its message, even when this statement is a transaction of its own.
# The f-string inserts only the compiled constants above, never input (so S608 is off).
_ENTER_ON_POSTGRESQL = text(
    compact_sql(
        f"""
    WITH found AS (
        SELECT ballot.id, ballot.day, ballot.opens_at, ballot.closes_at, ballot.frozen_at,
               ballot.market_point_id, market_point.household_limit,
               market_point.timezone, market_point.name
        FROM ballot JOIN market_point ON market_point.id = ballot.market_point_id
        WHERE ballot.id = :ballot_id AND market_point.active
    ), chosen AS (
        SELECT count(*) AS n, min(slot.starts_at) FILTER (WHERE slot.id = :first) AS first_starts
        FROM slot WHERE slot.id = ANY(CAST(:ids AS integer[])) AND slot.ballot_id = :ballot_id
          AND slot.closed_at IS NULL
    ), admitted AS (
        SELECT found.day, found.closes_at, found.name, found.timezone, chosen.first_starts,
               CAST(:body AS text) IS NULL OR (found.name = :seen_name
                   AND found.day = CAST(:seen_day AS date) AND found.closes_at = :seen_closes
                   AND found.timezone = :seen_timezone) AS text_current
        FROM found, chosen
        WHERE found.frozen_at IS NULL AND found.opens_at <= :now AND :now < found.closes_at
          AND chosen.n = :wanted AND NOT found.household_limit
    ), seen AS (
        SELECT id, lock_version FROM resident WHERE nik_hash = :nik_hash
    ), resident AS (
        INSERT INTO resident (nik_hash, nik_last4, lock_version, created_at)
        SELECT :nik_hash, :nik_last4, 0, :now FROM admitted
        ON CONFLICT (nik_hash) DO UPDATE SET lock_version = resident.lock_version + 1
        RETURNING id, lock_version
    ), held AS (
        SELECT count(booking.id) AS n
        FROM booking JOIN slot ON slot.id = booking.slot_id, admitted
        WHERE booking.resident_id = (SELECT id FROM resident) AND {_HELD_WHERE}
    ), verdict AS (
        SELECT resident.id AS resident_id,
               CASE WHEN NOT EXISTS (SELECT FROM seen) THEN resident.lock_version = 0
                    ELSE resident.id = (SELECT id FROM seen)
                         AND resident.lock_version = (SELECT lock_version FROM seen) + 1
               END AS fresh,
               held.n AS held
        FROM resident, held
    ), new_entry AS (
        INSERT INTO ballot_entry (ballot_id, code, resident_id, name, nik_last4, phone,
                                  language, kk_hash, preferences, elderly, status, created_at)
        SELECT :ballot_id, :code, verdict.resident_id, :name, :nik_last4, :phone, :language,
               NULL, :preferences, {_ELDERLY_SQL}, :status, :now
        FROM verdict, admitted
        WHERE verdict.fresh AND verdict.held < :limit AND admitted.text_current
        ON CONFLICT DO NOTHING
        RETURNING id
    ), new_notice AS (
        INSERT INTO notice (booking_id, kind, status, created_at, due_at, to_phone, language,
                            body, ref, via)
        SELECT NULL, 'ballot_entry', :pending, :now, :now, :phone, :language, :body,
               'ballot-entry:' || :code, ''
        FROM new_entry WHERE CAST(:body AS text) IS NOT NULL
        ON CONFLICT (ref) DO NOTHING
        RETURNING id, due_at
    )
    SELECT found.id, found.day, found.opens_at, found.closes_at, found.frozen_at,
           found.market_point_id, found.household_limit, found.timezone, found.name,
           chosen.n AS chosen, chosen.first_starts,
           (SELECT resident_id FROM verdict) AS resident_id,
           COALESCE((SELECT fresh FROM verdict), false) AS fresh,
           COALESCE((SELECT held FROM verdict), 0) AS held,
           COALESCE((SELECT text_current FROM admitted), true) AS text_current,
           (SELECT id FROM new_entry) AS entry_id,
           (SELECT id FROM new_notice) AS notice_id,
           (SELECT due_at FROM new_notice) AS due_at
    FROM found, chosen
    """  # noqa: S608
    )
).columns(
    # Positional: the rows are read by place, not matched to names on every execution.
    column("id", Integer()),
    column("day", Date()),
    column("opens_at", UTCDateTime()),
    column("closes_at", UTCDateTime()),
    column("frozen_at", UTCDateTime()),
    column("market_point_id", Integer()),
    column("household_limit", Boolean()),
    column("timezone", String()),
    column("name", String()),
    column("chosen", Integer()),
    column("first_starts", UTCDateTime()),
    column("resident_id", Integer()),
    column("fresh", Boolean()),
    column("held", Integer()),
    column("text_current", Boolean()),
    column("entry_id", Integer()),
    column("notice_id", Integer()),
    column("due_at", UTCDateTime()),
)

# On PostgreSQL ``enter_ballot`` enters in one statement; False runs the separate
# statements there too, as on SQLite (for tests comparing the two paths, benchmarks).
ONE_STATEMENT = True


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
    digits = re.sub(r"[\s.\-]", "", nik)
    code = new_booking_code()
    resident_id = None
    if ONE_STATEMENT and db.session.get_bind().dialect.name == "postgresql":
        text_key, body = _entry_text_guess(ballot_id, person, code)
        # The one statement is the whole transaction when it writes the message too (or
        # there is none) and nothing came before it: then it commits by itself.
        alone = single_statement_connection() if body or not person.phone else None
        conn = alone or db.session.connection()
        params = _entry_params(ballot_id, person, digits, wanted, code, now)
        params.update(_guess_params(text_key, body))
        ballot = conn.execute(_ENTER_ON_POSTGRESQL, params).first()
        _check_ballot(ballot, wanted, now)
        person = replace(person, kk_hash=household_hash(ballot, kk))
        if ballot.entry_id is not None:  # the one statement did it all
            entry = Entered(ballot.entry_id, code, ENTERED, person.phone, person.language)
            if ballot.notice_id is not None:
                note_queued([(ballot.notice_id, ballot.due_at)])
            else:  # no text was rendered yet: render it, a statement more
                _tell_entered(entry, ballot, now)
            return entry
        if person.kk_hash is None and ballot.fresh and ballot.text_current:
            # Counted in a snapshot that no request of this NIK passed: the verdict holds.
            if ballot.held >= nik_limit():
                raise limit_reached()
            raise AlreadyEntered()
        # A point with a household limit, a request of this NIK committed while this one
        # waited for its lock, or a ballot changed since its text was rendered: the rules
        # one statement each, counted afresh, in one transaction.
        resident_id, starts_at = ballot.resident_id, ballot.first_starts
        if alone is not None:  # the statement committed: its resident lock is gone
            leave_single_statement()
            resident_id = None
    else:
        ballot = db.session.execute(_BALLOT_FOR_ENTRY, {"ballot_id": ballot_id}).first()
        slots = {row.id: row for row in db.session.execute(_SLOTS_OF, {"ids": wanted})}
        _check_ballot(ballot, wanted, now, slots)
        person = replace(person, kk_hash=household_hash(ballot, kk))
        starts_at = slots[wanted[0]].starts_at
    if resident_id is None:
        resident_id = lock_resident(person.nik_hash, person.nik_last4)
    check_limits(resident_id, person.kk_hash, starts_at)
    params = _entry_params(ballot.id, person, digits, wanted, code, now)
    params.update(resident_id=resident_id, elderly=is_elderly(digits, ballot.day))
    entry_id = db.session.execute(_insert_entry(), params).scalar()
    if entry_id is None:
        if db.session.scalar(select(Ballot.frozen_at).where(Ballot.id == ballot.id)):
            raise BallotNotOpen()
        raise AlreadyEntered()
    entry = Entered(entry_id, code, ENTERED, person.phone, person.language)
    _tell_entered(entry, ballot, now)
    return entry


def _check_ballot(ballot, wanted: list[int], now: datetime, slots: dict | None = None) -> None:
    """Refuse an entry to ``ballot`` (a row, None: not found) at ``now`` with
    preferences ``wanted``: BallotNotFound, BallotNotOpen, InvalidPreferences (a slot
    not of the ballot, or closed by the market). ``slots``: the preferred slots' rows
    by id, or None when the row counts them itself (``chosen``: how many of ``wanted``
    are the ballot's open slots)."""
    if ballot is None:
        raise BallotNotFound()
    if not _open(ballot, now):
        raise BallotNotOpen()
    if slots is None:
        if ballot.chosen != len(wanted):
            raise InvalidPreferences()
    elif any(
        # A slot the market closed meanwhile (issue 8) gives no place at the draw.
        slots.get(i) is None or slots[i].ballot_id != ballot.id or slots[i].closed_at is not None
        for i in wanted
    ):
        raise InvalidPreferences()


def _entry_params(
    ballot_id: int,
    person: ResidentInput,
    digits: str,
    wanted: list[int],
    code: str,
    now: datetime,
) -> dict:
    """The bound values of an entry's insert (both paths) and of the one statement."""
    born, sixty, sixty_1900 = elderly_bounds(digits)
    return {
        "ballot_id": ballot_id,
        "code": code,
        "name": person.name,
        "nik_hash": person.nik_hash,
        "nik_last4": person.nik_last4,
        "phone": person.phone,
        "language": person.language,
        "kk_hash": person.kk_hash,
        "preferences": ",".join(str(i) for i in wanted),
        "ids": wanted,
        "first": wanted[0],
        "wanted": len(wanted),
        "status": ENTERED,
        "created_at": now,
        "now": now,
        "window": limit_window(),
        "limit": nik_limit(),
        "born": born,
        "sixty": sixty,
        "sixty_1900": sixty_1900,
    }


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


# Where an app keeps, per (ballot id, language), the facts of the ballot its entry
# message was last rendered from and that rendering (``_entry_text``).
_TEXTS_KEY = "antri_ballot_entry_texts"
_CODE_MARK = "\x00"  # stands for the entry code in a rendered text


def _facts(ballot) -> tuple:
    """What an entry message of ``ballot`` (a row) says besides the code."""
    return (ballot.name, ballot.day, ballot.closes_at, ballot.timezone)


def _entry_text(ballot, language: str) -> str:
    """The ``ballot_entry`` message of ``ballot`` (a row) in ``language``, the entry
    code left as _CODE_MARK; rendered once per app, ballot, language and facts."""
    texts = current_app.extensions.setdefault(_TEXTS_KEY, {})
    facts = _facts(ballot)
    known = texts.get((ballot.id, language))
    if known is not None and known[0] == facts:
        return known[1]
    link = public_url("ballots.page", ballot_id=ballot.id)
    with force_locale(language):
        rendered = _(
            "Antri: you entered the ballot of %(point)s for %(day)s. Entry code %(code)s. "
            "The draw is at %(draw)s; see your result: %(link)s",
            point=ballot.name,
            day=ballot.day.strftime("%d-%m-%Y"),
            code=_CODE_MARK,
            draw=when_text(ballot.closes_at, ballot.timezone, zone_name=True),
            link=link,
        )
    texts[(ballot.id, language)] = (facts, rendered)
    return rendered


def _entry_text_guess(ballot_id: int, person: ResidentInput, code: str) -> tuple[tuple, str]:
    """The message of an entry of ``ballot_id`` rendered from the facts this app saw
    last, and those facts; ((None,) * 4, None) when none were seen or ``person`` has no
    phone (then no message is written by the one statement)."""
    texts = current_app.extensions.get(_TEXTS_KEY, {})
    known = texts.get((ballot_id, person.language or "id"))
    if known is None or not person.phone:
        return (None, None, None, None), None
    return known[0], known[1].replace(_CODE_MARK, code)


def _guess_params(facts: tuple, body: str | None) -> dict:
    """The bound values of ``_ENTER_ON_POSTGRESQL``'s message: the text and the facts it
    was rendered from (the statement writes it only if they are the ballot's now)."""
    name, day, closes_at, timezone = facts
    return {
        "body": body,
        "seen_name": name,
        "seen_day": day,
        "seen_closes": closes_at,
        "seen_timezone": timezone,
        "pending": NOTICE_PENDING,
    }


def _tell_entered(entry: Entered, ballot, now: datetime) -> None:
    """Queue the ``ballot_entry`` message: the entry code and the time of the draw,
    in the resident's language (rendered now)."""
    if not entry.phone:
        return
    text_ = _entry_text(ballot, entry.language or "id").replace(_CODE_MARK, entry.code)
    queue_message(
        entry.phone,
        text_,
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
    claimed, previous = claim_key(key, fingerprint, kwargs.get("now") or utcnow())
    if claimed is None:
        if previous.ballot_entry_id is None:  # the key was a booking's
            raise IdempotencyKeyReused()
        return db.session.get(BallotEntry, previous.ballot_entry_id), True
    entry = enter_ballot(ballot_id, *args, **kwargs)
    record_result(claimed, ballot_entry_id=entry.id)
    return entry, False


def entry_by_code(ballot_id: int, code: str) -> BallotEntry | None:
    """The entry of ballot ``ballot_id`` with entry code ``code`` (any case, dashes and
    spaces allowed), or None. No phone: for showing a code the page just gave out."""
    canonical = normalise_code(code)
    if canonical is None or not valid_id(ballot_id):
        return None
    return db.session.scalar(
        select(BallotEntry).where(BallotEntry.ballot_id == ballot_id, BallotEntry.code == canonical)
    )


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

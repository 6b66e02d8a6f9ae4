"""Booking a slot and cancelling a booking: the resident's use cases.

Every function here takes plain values, flushes, and leaves the commit to the request
or CLI wrapper, so one use case is one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import NoReturn

from flask import current_app
from sqlalchemy import (
    Boolean,
    Integer,
    String,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    update,
)

from common.db import compact_sql
from common.locking import locking_connection
from common.timeutil import UTCDateTime, local_date, utcnow
from extensions import db
from notify.outbox import queue_notice, via_for, void_reminder
from slots.availability import PointSummary, SlotSummary, bookable, check_bookable, valid_id
from slots.codes import match_phone, new_booking_code, normalise_code
from slots.errors import (
    BallotRunning,
    BookingNotFound,
    CancelNotAllowed,
    IdempotencyKeyReused,
    SlotClosedByMarket,
    SlotFull,
    SlotNotFound,
    SoldOut,
)
from slots.feed import record_booking_event
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
from slots.locks import lock_resident, lock_slot
from slots.models import (
    CANCELLED,
    CONFIRMED,
    NOTICE_PENDING,
    WEB,
    Booking,
    MarketPoint,
    Slot,
)
from slots.places import (
    HAS_ROOM,
    forget_count,
    insert_booking,
    note_new_booking,
    take_place,
)
from slots.status import transition
from slots.stock import COVERS_ONE_MORE, IS_SET, RESERVE, give_back_booking, reserve_packages
from slots.waiting import free_place
from slots.waves import chosen_wave, open_waves, place_in_wave, wave_minutes, wave_params


@dataclass(frozen=True)
class BookingSummary:
    """A booking just made, as plain values: the attributes of ``Booking`` that
    ``api.schemas.booking_json`` and ``qr.service.issue_ticket`` read, so either can
    take it in place of the model without a second query."""

    id: int
    code: str
    status: str
    name: str
    nik_last4: str
    slot: SlotSummary
    arrive_at: datetime  # the start of its arrival wave, aware UTC (slots.waves)
    # Packages of the day's stock it reserved (issue 15; 0: no stock set that day).
    packages: int = 0

    @property
    def slot_id(self) -> int:
        """The slot's id, as ``Booking.slot_id``."""
        return self.slot.id


# One query gives everything a booking checks and answers with (Core, not the ORM:
# on a rush, loading model objects costs more than the database's work).
_SLOT_FOR_BOOKING = (
    select(
        Slot.id,
        Slot.starts_at,
        Slot.ends_at,
        Slot.published_at,
        Slot.market_point_id,
        MarketPoint.code,
        MarketPoint.name,
        MarketPoint.address,
        MarketPoint.timezone,
        MarketPoint.active,
        MarketPoint.household_limit,
        Slot.ballot_id,
    )
    .join(MarketPoint, Slot.market_point_id == MarketPoint.id)
    .where(Slot.id == bindparam("slot_id"))
)

_SLOT_CLOSED_AT = select(Slot.closed_at, Slot.ballot_id).where(Slot.id == bindparam("slot_id"))


def place_booking(
    slot_id: int,
    name: str,
    nik: str,
    phone: str,
    now: datetime | None = None,
    language: str = "id",
    phone_optional: bool = False,
    kk: str = "",
    channel: str = WEB,
) -> BookingSummary:
    """Book one place in a slot for a resident, under the booking rules.

    Args: slot_id; name as on the KTP; nik, 16 digits (separators allowed); phone,
      an Indonesian mobile number in any common form; now, aware UTC (default now);
      language, "id" or "en", the language of the resident's messages;
      phone_optional, for assisted booking by staff (see ``resident_input``); kk, the
      family card number, required at points with ``household_limit``; channel, how
      the resident reached Antri (``slots.models.BOOKING_CHANNELS``; issue 17), kept on
      the booking for the admins' counts.
    Returns: the new confirmed booking as a BookingSummary (written, not committed),
      with a pending ``confirmation`` notice (its reminder is written when it falls
      due: ``notify.outbox.write_due_reminders``).
    Raises: InvalidName, InvalidNIK, InvalidPhone, InvalidLanguage, InvalidKK (422);
      SlotNotFound (404); SlotClosed, LimitReached, HouseholdLimitReached, SlotFull,
      SoldOut (409).
    Rules (DESIGN.md): capacity is a hard cap, enforced by a conditional update of
      ``slot.booked_count`` under a CHECK constraint; so is stock (issue 15): where
      the slot's point-day has a stock setting the booking reserves its
      ``per_booking`` packages with one conditional update of the stock row, after
      the place (the lock order slot -> stock -> resident); one NIK holds at most
      BOOKING_LIMIT_PER_NIK active bookings whose slots start within
      BOOKING_LIMIT_WINDOW_DAYS of this one, serialised per NIK by ``lock_resident``.
    On PostgreSQL, at points without a household limit, the same steps run as one
    statement (``_BOOK_ON_POSTGRESQL``; the separate statements again when a request
    of the same NIK committed meanwhile), followed by one statement at most (the
    arrival wave, and the stock's confirmation when that statement saw no stock row:
    ``_settle_statement``): on a rush each round trip costs more than the work it
    carries, the more so under the slot's row lock.
    """
    now = now or utcnow()
    if not valid_id(slot_id):
        raise SlotNotFound()
    person = resident_input(name, nik, phone, language, phone_optional)
    conn = locking_connection()  # the slot's lock, then the resident's: timed waits
    postgresql = ONE_STATEMENT and conn.dialect.name == "postgresql"
    # Take the place first (the slot row lock, then the resident's, then the
    # household's: the lock order of every booking rule); a refusal below rolls the
    # place back with the transaction.
    if postgresql:
        code = new_booking_code()
        params = _book_params(slot_id, person, code, now)
        params["channel"] = channel
        params["via"] = via_for(channel)
        row = conn.execute(_BOOK_ON_POSTGRESQL, params).first()
        check_bookable(row, now)
        taken, resident_id = row.taken == 1, row.resident_id
    else:
        row = conn.execute(_SLOT_FOR_BOOKING, {"slot_id": slot_id}).first()
        check_bookable(row, now)
        taken = take_place(slot_id)
        resident_id = None
    if not taken:  # refused before any resident's lock: a full slot writes nothing
        _refuse_full(slot_id)
    if postgresql and row.stocked:  # the one statement reserved, or found it sold out
        if row.packages is None:
            raise SoldOut()  # the place taken is rolled back with the transaction
        packages = row.packages
    elif postgresql and row.booking_id is not None:
        packages = None  # confirmed below, in one statement with the arrival wave
    else:
        # SQLite, or a snapshot that saw no stock row and wrote no booking: a statement
        # of its own, now that the slot's lock is held, so a setting committed while the
        # one statement waited for that lock is seen (the setter locks the day's slots
        # to count). After the one statement the resident's lock is held already: a
        # stock row found only here is one committed in that window, so this step takes
        # the stock row after the resident's, against the order; a deadlock there (same
        # NIK booking the same day's other slot at that instant) is answered busy.
        packages = reserve_packages(row.market_point_id, local_date(row.starts_at, row.timezone))
    person = replace(person, kk_hash=household_hash(row, kk))
    point = PointSummary(row.market_point_id, row.code, row.name, row.address, row.timezone)
    slot = SlotSummary(row.id, row.starts_at, row.ends_at, row.market_point_id, point)
    if postgresql and row.booking_id is not None:  # the one statement did it all
        booking_id = row.booking_id
        if packages is None:  # one follow-up statement: the stock's confirmation and the wave
            arrive_at, packages = _settle_on_postgresql(booking_id, slot, now)
        else:  # stock settled above: the wave alone, if any (slots.waves: why it is exact)
            arrive_at = place_in_wave(booking_id, slot, now)
        note_new_booking(slot, booking_id, [(row.notice_id, row.due_at)], now)
    elif postgresql and person.kk_hash is None and row.fresh:
        raise limit_reached()  # counted in a snapshot that no booking of this NIK passed
    else:
        # SQLite, a point with a household limit, or a booking of this NIK committed
        # while this one waited for its lock: the rules one statement each, every
        # count in a snapshot that sees what the lock waited for.
        if resident_id is None:
            resident_id = lock_resident(person.nik_hash, person.nik_last4)
        check_limits(resident_id, person.kk_hash, row.starts_at)
        booking_id, code, arrive_at = insert_booking(
            slot, resident_id, person, now, "confirmation", packages, channel
        )
    forget_count(slot_id)
    return BookingSummary(
        booking_id, code, CONFIRMED, person.name, person.nik_last4, slot, arrive_at, packages
    )


def _refuse_full(slot_id: int) -> NoReturn:
    """Raise why no place was taken in a bookable slot: SlotClosedByMarket when the
    market closed it (maybe while this request waited for its lock), BallotRunning
    when a ballot took the slot meanwhile (issue 16), else SlotFull.
    A statement of its own: only a fresh snapshot sees a close that committed while
    the claim waited for the row lock (the claim's own snapshot predates it)."""
    closed_at, ballot_id = (
        db.session.connection().execute(_SLOT_CLOSED_AT, {"slot_id": slot_id}).one()
    )
    if closed_at is not None:
        raise SlotClosedByMarket()
    if ballot_id is not None:
        raise BallotRunning()
    raise SlotFull()


# On PostgreSQL ``place_booking`` books in one statement (below); False runs the
# separate statements there too, as on SQLite. For tests that compare the two paths
# (tests/slots/test_booking_paths.py) and benchmarks; the rules are the same either way.
ONE_STATEMENT = True


def _sql(clause, inline: bool = False) -> str:
    """The SQL text of a Core condition, for the one-statement booking's ``text()``:
    bound parameters stay ``:name``; with ``inline``, constants are written in."""
    return str(clause.compile(compile_kwargs={"literal_binds": inline}))


# The pieces the one statement shares with the separate statements: the capacity cap
# and "bookable" (``slots.places.HAS_ROOM``, ``slots.availability.bookable``) on the
# slot row it updates, and the bookings that count against the per-NIK limit
# (``slots.limits.counted_between``) around the slot taken.
_TAKEN_WHERE = _sql(and_(HAS_ROOM, bookable(bindparam("now", type_=UTCDateTime()))))
_HELD_WHERE = _sql(
    counted_between(
        literal_column("taken.starts_at - CAST(:window AS interval)"),
        literal_column("taken.starts_at + CAST(:window AS interval)"),
    ),
    inline=True,
)
# The stock cap (``slots.stock.COVERS_ONE_MORE``) on the stock row the statement updates.
_COVERS_WHERE = _sql(COVERS_ONE_MORE)

# PostgreSQL: the whole booking in one statement. The stock row's update reads the
# place's update and the resident's upsert reads both, so the locks come in the rule's
# order (slot -> stock -> resident), and the upsert runs only when a place was taken
# and the day's stock covered it, or the day has no stock row in the statement's
# snapshot (a refusal writes nothing; "no stock row" is confirmed by a statement of
# its own, ``_settle_statement``). The limit is counted in the statement's snapshot,
# taken before any wait for the resident's lock; that count is good only if no
# booking of this NIK committed in between. Every change that gives a resident a
# booking (booking, promotion, move) first bumps the resident row's lock_version, so
# the count is trusted ("fresh") only when the upsert returns the very row the
# snapshot saw (same id: a row purged and made anew meanwhile is not the same) at the
# version it saw plus its own bump, or made the row itself; otherwise nothing is
# written and ``place_booking`` counts again with ``check_limits``, a statement of its
# own with a new snapshot. Points with a household limit write nothing here either:
# their rules continue in separate statements. The booking is written arriving at the
# slot's start; its arrival wave is chosen after, by a statement of its own
# (``_settle_statement``, or ``slots.waves.place_in_wave`` when the stock is settled
# here): a CTE here would count in this statement's snapshot, taken before the wait
# for the slot's lock. So one statement follows at most: none with waves off and the
# day's stock row seen here (reserved, or sold out), the wave alone with waves on and
# the row seen, the confirmation of "no stock row" with the wave otherwise.
# The f-string inserts only the compiled constants above, never input (so S608 is off).
_BOOK_ON_POSTGRESQL = text(
    compact_sql(
        f"""
    WITH seen AS (
        SELECT id, lock_version FROM resident WHERE nik_hash = :nik_hash
    ), taken AS (
        UPDATE slot SET booked_count = booked_count + 1
        WHERE id = :slot_id AND {_TAKEN_WHERE}
        RETURNING id, starts_at, market_point_id
    ), stocked AS (
        SELECT stock.id FROM stock, slot JOIN market_point ON market_point.id = slot.market_point_id
        WHERE slot.id = :slot_id AND stock.market_point_id = slot.market_point_id
          AND stock.day = CAST(timezone(market_point.timezone, slot.starts_at) AS date)
    ), packed AS (
        UPDATE stock SET reserved = stock.reserved + stock.per_booking
        FROM taken JOIN market_point ON market_point.id = taken.market_point_id
        WHERE stock.market_point_id = taken.market_point_id
          AND stock.day = CAST(timezone(market_point.timezone, taken.starts_at) AS date)
          AND {_COVERS_WHERE}
        RETURNING stock.per_booking
    ), resident AS (
        INSERT INTO resident (nik_hash, nik_last4, lock_version, created_at)
        SELECT :nik_hash, :nik_last4, 0, :now FROM taken
        WHERE EXISTS (SELECT FROM packed) OR NOT EXISTS (SELECT FROM stocked)
        ON CONFLICT (nik_hash) DO UPDATE SET lock_version = resident.lock_version + 1
        RETURNING id, lock_version
    ), held AS (
        SELECT count(booking.id) AS n
        FROM booking JOIN slot ON slot.id = booking.slot_id, taken
        WHERE booking.resident_id = (SELECT id FROM resident)
          AND {_HELD_WHERE}
    ), verdict AS (
        SELECT resident.id AS resident_id,
               CASE WHEN NOT EXISTS (SELECT FROM seen) THEN resident.lock_version = 0
                    ELSE resident.id = (SELECT id FROM seen)
                         AND resident.lock_version = (SELECT lock_version FROM seen) + 1
               END AS fresh,
               held.n AS held,
               NOT market_point.household_limit AS plain,
               taken.starts_at
        FROM resident, held, taken JOIN market_point ON market_point.id = taken.market_point_id
    ), new_booking AS (
        INSERT INTO booking (code, slot_id, resident_id, name, nik_last4, phone, language,
                             status, created_at, packages, arrive_at, channel)
        SELECT :code, :slot_id, verdict.resident_id, :name, :nik_last4, :phone, :language,
               :status, :now, COALESCE((SELECT per_booking FROM packed), 0), verdict.starts_at,
               :channel
        FROM verdict WHERE verdict.fresh AND verdict.plain AND verdict.held < :limit
        RETURNING id
    ), new_notice AS (
        INSERT INTO notice (booking_id, kind, status, created_at, due_at, via)
        SELECT new_booking.id, :kind, :pending, :now, :now, :via FROM new_booking
        RETURNING id, due_at
    )
    SELECT slot.id, slot.starts_at, slot.ends_at, slot.published_at, slot.market_point_id,
           market_point.code, market_point.name, market_point.address,
           market_point.timezone, market_point.active, market_point.household_limit,
           slot.ballot_id,
           (SELECT count(*) FROM taken) AS taken,
           (SELECT resident_id FROM verdict) AS resident_id,
           COALESCE((SELECT fresh FROM verdict), false) AS fresh,
           (SELECT id FROM new_booking) AS booking_id,
           (SELECT id FROM new_notice) AS notice_id,
           (SELECT due_at FROM new_notice) AS due_at,
           EXISTS (SELECT FROM stocked) AS stocked,
           (SELECT per_booking FROM packed) AS packages
    FROM slot JOIN market_point ON market_point.id = slot.market_point_id
    WHERE slot.id = :slot_id
    """  # noqa: S608
    )
).columns(
    id=Integer(),
    starts_at=UTCDateTime(),
    ends_at=UTCDateTime(),
    published_at=UTCDateTime(),
    market_point_id=Integer(),
    code=String(),
    name=String(),
    address=String(),
    timezone=String(),
    active=Boolean(),
    household_limit=Boolean(),
    ballot_id=Integer(),
    taken=Integer(),
    resident_id=Integer(),
    fresh=Boolean(),
    booking_id=Integer(),
    notice_id=Integer(),
    due_at=UTCDateTime(),
    stocked=Boolean(),
    packages=Integer(),
)


# PostgreSQL: what the one statement leaves to a statement of its own when its snapshot
# saw no stock row for the slot's point-day, in one round trip. The reservation of one
# booking's packages if the day has a stock row now that covers it
# (``slots.stock.RESERVE``, the cap ``COVERS_ONE_MORE`` in its WHERE), whether the day
# has a stock row at all (``slots.stock.IS_SET``: a row not covering it means sold
# out), and the booking's arrival wave (``slots.waves.chosen_wave``), written on the
# booking with the packages reserved. Exact for the same reason as each step apart:
# one statement has one snapshot, taken when it starts, after the slot's row lock was
# had (the one statement's ``taken``), so it sees every booking of the slot committed
# by a transaction that held the lock before (the waves), and a stock setting
# committed while the one statement waited for that lock (``set_stock`` locks the
# day's slots before it counts and writes the row, so one committed later waits for
# this transaction). The reservation's update waits for, and re-reads, a stock row
# that a booking of another slot of the day holds, as ``reserve_packages`` does. Used only where the
# one statement reserved nothing (no stock row in its snapshot), so it never reserves
# twice for one booking. Locks: the stock row, after the resident's (held since the
# one statement), against the order, as ``reserve_packages`` there (see
# ``place_booking``); the booking row is this transaction's own, not yet committed,
# so no one else waits for it. Built once per count of open waves.
@lru_cache(maxsize=64)
def _settle_statement(waves: int):
    reserved = RESERVE.cte("reserved")
    return (
        update(Booking)
        .add_cte(reserved)
        .where(Booking.id == bindparam("wave_booking"))
        .values(
            arrive_at=chosen_wave(waves),
            packages=func.coalesce(select(reserved.c.per_booking).scalar_subquery(), 0),
        )
        .returning(Booking.arrive_at, Booking.packages, IS_SET.exists().label("is_set"))
        .execution_options(synchronize_session=False)
    )


def _settle_on_postgresql(
    booking_id: int, slot: SlotSummary, now: datetime
) -> tuple[datetime, int]:
    """Confirm the stock of booking ``booking_id`` (written by the one statement, its
    snapshot having seen no stock row) and give it its arrival wave: one statement
    (``_settle_statement``: why it is exact).

    Returns: (arrive_at aware UTC, packages reserved: 0 when the day has no stock row).
    Raises: SoldOut (409) when the day's stock row, set while the one statement waited
      for the slot's lock, cannot cover one more booking (the booking is rolled back
      with the transaction).
    """
    waves = open_waves(slot, now, wave_minutes())
    params = wave_params(booking_id, slot, waves)
    params.update(
        point_id=slot.market_point_id, on_day=local_date(slot.starts_at, slot.market_point.timezone)
    )
    row = db.session.connection().execute(_settle_statement(len(waves)), params).one()
    if row.is_set and not row.packages:
        raise SoldOut()
    return row.arrive_at, row.packages


def _book_params(slot_id: int, person: ResidentInput, code: str, now: datetime) -> dict:
    """The bound values of ``_BOOK_ON_POSTGRESQL``."""
    return {
        "slot_id": slot_id,
        "now": now,
        "nik_hash": person.nik_hash,
        "nik_last4": person.nik_last4,
        "window": limit_window(),
        "code": code,
        "name": person.name,
        "phone": person.phone,
        "language": person.language,
        "status": CONFIRMED,
        "limit": nik_limit(),
        "pending": NOTICE_PENDING,
        "kind": "confirmation",
    }


def book_slot(
    slot_id: int,
    name: str,
    nik: str,
    phone: str,
    now: datetime | None = None,
    language: str = "id",
    phone_optional: bool = False,
    kk: str = "",
    channel: str = WEB,
) -> Booking:
    """``place_booking``, returning the new Booking model (one more query).

    Args, Raises and Rules: as ``place_booking``.
    Returns: the new confirmed Booking (written, not committed).
    """
    placed = place_booking(
        slot_id, name, nik, phone, now, language, phone_optional, kk, channel=channel
    )
    return db.session.get(Booking, placed.id)


def book_slot_once(
    key: str,
    fingerprint: str,
    slot_id: int,
    name: str,
    nik: str,
    phone: str,
    now: datetime | None = None,
    language: str = "id",
    phone_optional: bool = False,
    kk: str = "",
    channel: str = WEB,
) -> tuple[Booking, bool]:
    """Book a slot at most once per idempotency ``key``.

    Args: key, the client's Idempotency-Key (1 to 200 printable ASCII characters);
      fingerprint, ``request_fingerprint`` of the request; the rest as ``book_slot``.
    Returns: (booking, replayed): replayed is True when the key was used before with
      the same request, and the booking is that first request's.
    Raises: IdempotencyKeyReused (422) for the same key with another request,
      InvalidIdempotencyKey (422) for a malformed key, and whatever ``book_slot``
      raises (then the key is not kept, so the client may retry with it).
    """
    now = now or utcnow()
    claimed, previous = claim_key(key, fingerprint, now)
    if claimed is None:
        if previous.booking is None:  # the key was an entry's (another kind of request)
            raise IdempotencyKeyReused()
        return previous.booking, True
    booking = book_slot(slot_id, name, nik, phone, now, language, phone_optional, kk, channel)
    record_result(claimed, booking_id=booking.id)
    return booking, False


def find_booking(code: str) -> Booking | None:
    """Return the booking with booking code ``code`` (any typing of it), or None."""
    canonical = normalise_code(code)
    if canonical is None:
        return None
    return db.session.scalar(select(Booking).where(Booking.code == canonical))


def get_booking_for_resident(code: str, phone: str) -> Booking:
    """Return the booking matching both its code and the phone it was made with.

    Raises: BookingNotFound for any mismatch.
    """
    return match_phone(find_booking(code), phone, BookingNotFound)


def cancel_deadline(booking: Booking) -> datetime:
    """Return the last UTC instant at which ``booking`` may be cancelled: the slot
    start minus CANCEL_CUTOFF_MINUTES."""
    return booking.slot.starts_at - timedelta(minutes=current_app.config["CANCEL_CUTOFF_MINUTES"])


def can_cancel(booking: Booking, now: datetime | None = None) -> bool:
    """True when ``booking`` is confirmed and ``now`` (aware UTC) is before its deadline."""
    return booking.status == CONFIRMED and (now or utcnow()) < cancel_deadline(booking)


def cancel_booking(booking: Booking, now: datetime | None = None) -> Booking:
    """Cancel a confirmed booking and free its place at once.

    The freed place goes straight to the first resident on the slot's waiting list
    who is still within the per-NIK limit (see ``promote``); only when nobody can
    take it does the slot's count go down.
    Args: booking; now, aware UTC (default now).
    The packages it reserved go back to its point-day's stock (issue 15).
    Returns: the booking, now ``cancelled``, with a pending ``cancellation`` notice.
    Raises: CancelNotAllowed when it is not confirmed any more, or the slot starts
      within CANCEL_CUTOFF_MINUTES (DESIGN.md: status moves only forward).
    """
    now = now or utcnow()
    if now >= cancel_deadline(booking):
        raise CancelNotAllowed(
            CancelNotAllowed.default_message,
            cutoff_minutes=current_app.config["CANCEL_CUTOFF_MINUTES"],
        )
    # Conditional update: a concurrent scan or cancel decides once, not twice.
    if not transition(Booking, booking.id, CONFIRMED, CANCELLED, cancelled_at=now):
        db.session.refresh(booking)
        raise CancelNotAllowed()
    # The booking's row is locked now: read where it is (a move committed since it was
    # loaded changed its slot), and free the place there.
    db.session.refresh(booking)
    queue_notice(booking, "cancellation", now)
    void_reminder(booking.id)
    record_booking_event("cancellation", booking, booking.slot, now)
    lock_slot(booking.slot)
    give_back_booking(booking, booking.slot)  # after the slot's lock: the lock order
    free_place(booking.slot, now)
    db.session.refresh(booking)
    return booking

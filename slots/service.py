"""Booking rules: finding points and slots, booking, cancelling, generating slots.

Every function here takes plain values, flushes, and leaves the commit to the request
or CLI wrapper, so one use case is one transaction.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import NoReturn

from flask import current_app
from sqlalchemy import (
    Boolean,
    Integer,
    String,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from common import events
from common.errors import DomainError
from common.timeutil import UTCDateTime, local_day_bounds, local_instant, utcnow, zone
from extensions import db
from slots.errors import (
    AlreadyBooked,
    AlreadyWaiting,
    BookingNotFound,
    CancelNotAllowed,
    HouseholdLimitReached,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    InvalidLanguage,
    InvalidPhone,
    InvalidSlotRange,
    LimitReached,
    MarketPointNotFound,
    NotWaiting,
    SlotClosed,
    SlotClosedByMarket,
    SlotFull,
    SlotNotFound,
    SlotNotFull,
    SlotOverlap,
    WaitingEntryNotFound,
)
from slots.identity import (
    clean_name,
    hash_kk,
    hash_nik,
    normalise_phone,
    validate_kk,
    validate_nik,
)
from slots.models import (
    ACTIVE_STATUSES,
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    LEFT,
    NO_SHOW,
    NOTICE_PENDING,
    NOTICE_VOID,
    PROMOTED,
    SKIPPED,
    WAITING,
    Booking,
    Household,
    IdempotencyKey,
    MarketPoint,
    Notice,
    Resident,
    Slot,
    WaitingListEntry,
)
from slots.window import closed_for_ends_by

# Booking codes avoid look-alikes (0/O, 1/I/L, 2/Z, 5/S, 8/B) so they can be read
# aloud and typed at the gate; every character is also QR-alphanumeric.
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
CODE_LENGTH = 8  # 25**8 ~ 1.5e11 codes: unguessable behind a phone check and rate limits
_CODE_RE = re.compile(rf"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")


def new_booking_code() -> str:
    """Return a fresh random booking code of CODE_LENGTH characters (secrets-grade)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str | None:
    """Return the canonical booking code typed as ``raw`` or None if it cannot be one.

    Case, spaces and dashes are ignored (``abcd-efgh`` is ``ABCDEFGH``).
    """
    code = re.sub(r"[\s\-]", "", raw or "").upper()
    return code if _CODE_RE.fullmatch(code) else None


def booking_access_key(code: str) -> str:
    """Return the key (20 hex chars) in a ticket's capability URL.

    HMAC-SHA256 of the booking code under SECRET_KEY: only someone given the URL, or
    who proved the phone number at look-up, can open the ticket page and QR image.
    """
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, b"ticket:" + code.encode(), hashlib.sha256).hexdigest()[:20]


def waiting_access_key(code: str) -> str:
    """Return the key (20 hex chars) in a waiting-list page's capability URL."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, b"waiting:" + code.encode(), hashlib.sha256).hexdigest()[:20]


def check_waiting_access_key(code: str, key: str) -> bool:
    """True when ``key`` is the access key of waiting-list entry ``code``."""
    return hmac.compare_digest(waiting_access_key(code).encode(), (key or "").encode())


def check_access_key(code: str, key: str) -> bool:
    """True when ``key`` is the access key of booking ``code`` (constant-time)."""
    return hmac.compare_digest(booking_access_key(code).encode(), (key or "").encode())


# Market points -----------------------------------------------------------------


def search_market_points(query: str = "") -> list[MarketPoint]:
    """Return active market points whose name or kecamatan contains ``query``.

    Case-insensitive; an empty query returns all, ordered by city then name.
    """
    stmt = select(MarketPoint).where(MarketPoint.active.is_(True))
    words = query.strip()
    if words:
        like = f"%{words.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(MarketPoint.name).like(like),
                func.lower(MarketPoint.kecamatan).like(like),
                func.lower(MarketPoint.city).like(like),
            )
        )
    return list(db.session.scalars(stmt.order_by(MarketPoint.city, MarketPoint.name)))


def get_market_point(code: str) -> MarketPoint:
    """Return the active market point with ``code``.

    Raises: MarketPointNotFound.
    """
    point = db.session.scalar(
        select(MarketPoint).where(
            MarketPoint.code == (code or "").strip().upper(),
            MarketPoint.active.is_(True),
        )
    )
    if point is None:
        raise MarketPointNotFound()
    return point


def import_market_points(path: Path, safe_limit: int, tz_name: str) -> tuple[int, int]:
    """Create or update market points from the shipped Jakarta market CSV.

    Args: path to a CSV with columns name, address, kecamatan, city, latitude,
      longitude, kecamatan_code, infopangan_market_id; safe_limit (people) and
      tz_name for new points.
    Returns: (created, updated) counts. Codes are ``JKT-<infopangan id, 3 digits>``
      so they stay stable across imports.
    """
    created = updated = 0
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            source_id = int(row["infopangan_market_id"])
            code = f"JKT-{source_id:03d}"
            point = db.session.scalar(select(MarketPoint).where(MarketPoint.code == code))
            if point is None:
                point = MarketPoint(
                    code=code,
                    safe_limit=safe_limit,
                    timezone=tz_name,
                    opens_at=time(7, 0),
                    closes_at=time(12, 0),
                )
                db.session.add(point)
                created += 1
            else:
                updated += 1
            point.name = row["name"].strip()
            point.address = row["address"].strip()
            point.kecamatan = row["kecamatan"].strip()
            point.kecamatan_code = row["kecamatan_code"].strip()
            point.city = row["city"].strip()
            point.latitude = float(row["latitude"]) if row["latitude"] else None
            point.longitude = float(row["longitude"]) if row["longitude"] else None
            point.source_id = source_id
    db.session.flush()
    return created, updated


# Slots -------------------------------------------------------------------------


def list_slots(point: MarketPoint, day: date, now: datetime | None = None) -> list[Slot]:
    """Return the published slots of ``point`` on local calendar ``day``, by start time.

    Args: day in the point's timezone; now, an aware UTC instant (default: now).
    """
    now = now or utcnow()
    start, end = local_day_bounds(day, point.timezone)
    stmt = (
        select(Slot)
        .where(
            Slot.market_point_id == point.id,
            Slot.starts_at >= start,
            Slot.starts_at < end,
            Slot.published_at <= now,
            Slot.closed_at.is_(None),
        )
        .order_by(Slot.starts_at)
    )
    return list(db.session.scalars(stmt))


def transition(model, row_id: int, from_status: str, to_status: str, **values) -> bool:
    """Move one row of ``model`` (Booking or WaitingListEntry) from ``from_status`` to
    ``to_status`` with a conditional update, setting ``values`` too.

    Returns: True when this call moved it; False when it was not in ``from_status``
    (another transaction decided first). Statuses only move forward (DESIGN.md).
    """
    moved = db.session.execute(
        update(model)
        .where(model.id == row_id, model.status == from_status)
        .values(status=to_status, **values)
        .execution_options(synchronize_session=False)
    )
    return moved.rowcount == 1


def _valid_id(value: object) -> bool:
    """True for an int that fits the database's 32-bit id columns."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


def get_slot(slot_id: int, now: datetime | None = None) -> Slot:
    """Return the published slot ``slot_id``.

    Raises: SlotNotFound when there is none or it is not published yet.
    """
    now = now or utcnow()
    slot = (
        db.session.get(Slot, slot_id, options=[joinedload(Slot.market_point)])
        if _valid_id(slot_id)
        else None
    )
    if slot is None or slot.published_at > now or not slot.market_point.active:
        raise SlotNotFound()
    return slot


def lock_market_point(point: MarketPoint) -> None:
    """Take ``point``'s row lock (a no-op write; on SQLite, the write lock) for the rest
    of the transaction. Serialises what must be decided one at a time per point:
    admissions against the safe limit (two gates cannot both admit the last place)
    and the making of slots (two generations would each check for overlaps before the
    other's slots exist)."""
    db.session.execute(
        update(MarketPoint)
        .where(MarketPoint.id == point.id)
        .values(safe_limit=MarketPoint.safe_limit)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class GeneratedSlots:
    """Result of ``generate_slots``: slots made now and slots that already existed."""

    created: list[Slot]
    existing: list[Slot]


def generate_slots(
    point: MarketPoint,
    day: date,
    start: time,
    end: time,
    length_minutes: int,
    capacity: int,
    now: datetime | None = None,
) -> GeneratedSlots:
    """Create back-to-back slots at ``point`` from ``start`` to ``end`` local time on ``day``.

    Idempotent: a slot with the same start and end is kept as it is. Slots
    are published at once (DESIGN.md: generated slots without a publish time).
    Args: length_minutes > 0; capacity >= 0 bookings per slot.
    Returns: GeneratedSlots(created, existing).
    Raises: InvalidSlotRange when end is not after start, the length is not positive,
      or no whole slot fits; SlotOverlap when a new slot would overlap another one.
    """
    now = now or utcnow()
    if length_minutes <= 0 or capacity < 0 or end <= start:
        raise InvalidSlotRange()
    first = local_instant(day, start, point.timezone)
    last = local_instant(day, end, point.timezone)
    step = timedelta(minutes=length_minutes)
    if first + step > last:
        raise InvalidSlotRange()
    lock_market_point(point)
    around = list(
        db.session.scalars(
            select(Slot).where(
                Slot.market_point_id == point.id,
                Slot.starts_at < last,
                Slot.ends_at > first,
            )
        )
    )
    created: list[Slot] = []
    existing: list[Slot] = []
    cursor = first
    while cursor + step <= last:
        window_end = cursor + step
        same = [s for s in around if s.starts_at == cursor and s.ends_at == window_end]
        if same:
            existing.append(same[0])
        elif any(s.starts_at < window_end and s.ends_at > cursor for s in around):
            # An overlapping slot would silently add capacity at the same time.
            raise SlotOverlap()
        else:
            slot = Slot(
                market_point=point,
                starts_at=cursor,
                ends_at=window_end,
                capacity=capacity,
                booked_count=0,
                published_at=now,
            )
            db.session.add(slot)
            created.append(slot)
        cursor = window_end
    db.session.flush()
    return GeneratedSlots(created=created, existing=existing)


# Bookings ----------------------------------------------------------------------


# The booking path's statements are built once and reused with bound values: on a
# rush, building SQLAlchemy statements costs as much CPU as running them.


@cache
def _lock_row_upsert(model, key: str, dialect: str, *extra: str):
    """An upsert of ``model`` on its unique ``key`` that bumps ``lock_version`` when the
    row exists: one statement that creates the row or takes its write lock, returning
    its id. Bound values: ``key``, ``created_at`` and each of ``extra``. Resident and
    household rows are the locks that serialise one person's or family's bookings."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    values = {name: bindparam(name) for name in (key, *extra)}
    return (
        insert(model)
        .values(
            **values,
            lock_version=0,
            created_at=bindparam("created_at", type_=model.created_at.type),
        )
        .on_conflict_do_update(
            index_elements=[getattr(model, key)],
            set_={"lock_version": model.lock_version + 1},
        )
        .returning(model.id)
    )


def _resident_upsert(dialect: str):
    return _lock_row_upsert(Resident, "nik_hash", dialect, "nik_last4")


def _household_upsert(dialect: str):
    return _lock_row_upsert(Household, "kk_hash", dialect)


def household_hash(point: MarketPoint, kk: str) -> str | None:
    """The keyed hash of ``kk`` when ``point`` (a MarketPoint, or a row with its
    ``household_limit``) limits bookings per household, else None.

    Raises: InvalidKK (422) at such a point when the KK number is missing or malformed.
    """
    if not point.household_limit:
        return None
    return hash_kk(validate_kk(kk), current_app.config["NIK_HASH_KEY"])


def _lock_household(kk_hash: str, now: datetime) -> None:
    """Take the family card's row lock (created on first use): after the resident's, in
    the lock order slot, resident, household."""
    stmt = _household_upsert(db.session.get_bind().dialect.name)
    db.session.execute(stmt, {"kk_hash": kk_hash, "created_at": now})


def _check_household(kk_hash: str | None, starts_at: datetime) -> None:
    """Serialise bookings of one family card (``_lock_household``) and raise
    HouseholdLimitReached when it holds BOOKING_LIMIT_PER_KK active bookings whose slots
    start within BOOKING_LIMIT_WINDOW_DAYS of ``starts_at``.
    Rule: issue 3, "optionally also per household (KK number) when a point asks for it"."""
    if kk_hash is None:
        return
    _lock_household(kk_hash, utcnow())
    if _household_held(kk_hash, starts_at) >= current_app.config["BOOKING_LIMIT_PER_KK"]:
        raise HouseholdLimitReached(
            HouseholdLimitReached.default_message,
            limit=current_app.config["BOOKING_LIMIT_PER_KK"],
            window_days=current_app.config["BOOKING_LIMIT_WINDOW_DAYS"],
        )


def _household_held(kk_hash: str, starts_at: datetime, exclude: int = 0) -> int:
    """Count the family card's active bookings around ``starts_at`` (the window), not
    counting booking ``exclude`` (0: none)."""
    window = timedelta(days=current_app.config["BOOKING_LIMIT_WINDOW_DAYS"])
    return db.session.scalar(
        select(func.count(Booking.id))
        .join(Slot, Booking.slot_id == Slot.id)
        .where(
            Booking.kk_hash == kk_hash,
            Booking.id != exclude,
            Booking.status.in_(ACTIVE_STATUSES),
            Slot.starts_at > starts_at - window,
            Slot.starts_at < starts_at + window,
        )
    )


def _lock_resident(nik_hash: str, last4: str) -> int:
    """Create or touch the resident row of ``nik_hash`` and return its id.

    The upsert takes the resident's row lock (on SQLite, writes hold the database
    lock already), so a second booking by the same NIK waits here until the first has
    committed and then sees it. Lock order everywhere: the booking being cancelled,
    then the slot row, then residents (the waiting list's in line order).
    """
    conn = db.session.connection()
    params = {"nik_hash": nik_hash, "nik_last4": last4, "created_at": utcnow()}
    return conn.execute(_resident_upsert(conn.dialect.name), params).scalar_one()


_HELD_IN_WINDOW = (
    select(func.count(Booking.id))
    .join(Slot, Booking.slot_id == Slot.id)
    .where(
        Booking.resident_id == bindparam("resident_id"),
        Booking.id != bindparam("exclude"),
        Booking.status.in_(ACTIVE_STATUSES),
        Slot.starts_at > bindparam("after", type_=Slot.starts_at.type),
        Slot.starts_at < bindparam("before", type_=Slot.starts_at.type),
    )
)

_TAKE_PLACE = (
    update(Slot)
    .where(
        Slot.id == bindparam("slot_id"),
        Slot.booked_count < Slot.capacity,
        # In the WHERE, not only checked before: a close committed while this waited
        # for the row lock is seen here.
        Slot.closed_at.is_(None),
    )
    .values(booked_count=Slot.booked_count + 1)
    .execution_options(synchronize_session=False)
)


_LOCK_SLOT = (
    update(Slot)
    .where(Slot.id == bindparam("slot_id"))
    .values(booked_count=Slot.booked_count)
    .execution_options(synchronize_session=False)
)


def _lock_slot(slot: Slot) -> None:
    """Take the slot's row lock (a no-op write) so its count and waiting list cannot
    change under us; on SQLite, as every first write, the database write lock."""
    db.session.execute(_LOCK_SLOT, {"slot_id": slot.id})
    db.session.expire(slot, ["booked_count"])


def _holds_place_in(resident_id: int, slot_id: int) -> bool:
    """True when the resident already has an active booking in this slot."""
    return (
        db.session.scalar(
            select(Booking.id).where(
                Booking.resident_id == resident_id,
                Booking.slot_id == slot_id,
                Booking.status.in_(ACTIVE_STATUSES),
            )
        )
        is not None
    )


def _held_in_window(resident_id: int, starts_at: datetime, exclude: int = 0) -> int:
    """Count the resident's active bookings whose slots start within
    BOOKING_LIMIT_WINDOW_DAYS (before or after) of ``starts_at``, not counting booking
    ``exclude`` (the one being moved; 0: none)."""
    window = timedelta(days=current_app.config["BOOKING_LIMIT_WINDOW_DAYS"])
    params = {
        "resident_id": resident_id,
        "exclude": exclude,
        "after": starts_at - window,
        "before": starts_at + window,
    }
    return db.session.connection().execute(_HELD_IN_WINDOW, params).scalar()


def _check_limit(resident_id: int, starts_at: datetime) -> None:
    """Raise LimitReached when the resident already holds BOOKING_LIMIT_PER_NIK
    bookings around ``starts_at`` (DESIGN.md: per-resident limit)."""
    if _held_in_window(resident_id, starts_at) >= current_app.config["BOOKING_LIMIT_PER_NIK"]:
        raise _limit_reached()


def _limit_reached() -> LimitReached:
    """The LimitReached error, carrying the limit and its window (days)."""
    config = current_app.config
    return LimitReached(
        LimitReached.default_message,
        limit=config["BOOKING_LIMIT_PER_NIK"],
        window_days=config["BOOKING_LIMIT_WINDOW_DAYS"],
    )


@dataclass(frozen=True)
class ResidentInput:
    """A resident's validated details: clean name, NIK hash, last four, E.164 phone."""

    name: str
    nik_hash: str
    nik_last4: str
    phone: str
    language: str = "id"
    kk_hash: str | None = None  # only at points with household_limit


def resident_input(
    name: str, nik: str, phone: str, language: str = "id", phone_optional: bool = False
) -> ResidentInput:
    """Validate a resident's name, NIK, phone and message language.

    Args: language, a code of LANGUAGES ("id" or "en"): their messages use it;
      phone_optional, True for a booking staff make for a resident without a phone
      (an empty phone is then kept as "", and no message is sent).
    Raises: InvalidName, InvalidNIK, InvalidPhone, InvalidLanguage (422).
    """
    clean = clean_name(name)
    digits = validate_nik(nik)
    e164 = "" if phone_optional and not (phone or "").strip() else normalise_phone(phone)
    if language not in current_app.config["LANGUAGES"]:
        raise InvalidLanguage()
    return ResidentInput(
        clean, hash_nik(digits, current_app.config["NIK_HASH_KEY"]), digits[-4:], e164, language
    )


@dataclass(frozen=True)
class PointSummary:
    """The market point fields a new booking's answer and ticket need."""

    id: int
    code: str
    name: str
    address: str
    timezone: str  # IANA zone name, e.g. "Asia/Jakarta"


@dataclass(frozen=True)
class SlotSummary:
    """The slot fields a new booking's answer and ticket need (instants aware UTC)."""

    id: int
    starts_at: datetime
    ends_at: datetime
    market_point_id: int
    market_point: PointSummary


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
    )
    .join(MarketPoint, Slot.market_point_id == MarketPoint.id)
    .where(Slot.id == bindparam("slot_id"))
)

_SLOT_CLOSED_AT = select(Slot.closed_at).where(Slot.id == bindparam("slot_id"))


def place_booking(
    slot_id: int,
    name: str,
    nik: str,
    phone: str,
    now: datetime | None = None,
    language: str = "id",
    phone_optional: bool = False,
    kk: str = "",
) -> BookingSummary:
    """Book one place in a slot for a resident, under the booking rules.

    Args: slot_id; name as on the KTP; nik, 16 digits (separators allowed); phone,
      an Indonesian mobile number in any common form; now, aware UTC (default now);
      language, "id" or "en", the language of the resident's messages;
      phone_optional, for assisted booking by staff (see ``resident_input``); kk, the
      family card number, required at points with ``household_limit``.
    Returns: the new confirmed booking as a BookingSummary (written, not committed),
      with a pending ``confirmation`` notice (its reminder is written when it falls
      due: ``notices.write_due_reminders``).
    Raises: InvalidName, InvalidNIK, InvalidPhone, InvalidLanguage, InvalidKK (422);
      SlotNotFound (404); SlotClosed, LimitReached, HouseholdLimitReached, SlotFull (409).
    Rules (DESIGN.md): capacity is a hard cap, enforced by a conditional update of
      ``slot.booked_count`` under a CHECK constraint; one NIK holds at most
      BOOKING_LIMIT_PER_NIK active bookings whose slots start within
      BOOKING_LIMIT_WINDOW_DAYS of this one, serialised per NIK by ``_lock_resident``.
    On PostgreSQL, at points without a household limit, the same steps run as one
    statement (``_BOOK_ON_POSTGRESQL``; the separate statements again when a request
    of the same NIK committed meanwhile): on a rush each round trip costs more than
    the work it carries.
    """
    now = now or utcnow()
    if not _valid_id(slot_id):
        raise SlotNotFound()
    person = resident_input(name, nik, phone, language, phone_optional)
    conn = db.session.connection()
    postgresql = conn.dialect.name == "postgresql"
    # Take the place first (the slot row lock, then the resident's, then the
    # household's: the lock order of every booking rule); a refusal below rolls the
    # place back with the transaction.
    if postgresql:
        code = new_booking_code()
        row = conn.execute(_BOOK_ON_POSTGRESQL, _book_params(slot_id, person, code, now)).first()
        _check_bookable(row, now)
        taken, resident_id = row.taken == 1, row.resident_id
    else:
        row = conn.execute(_SLOT_FOR_BOOKING, {"slot_id": slot_id}).first()
        _check_bookable(row, now)
        taken = conn.execute(_TAKE_PLACE, {"slot_id": slot_id}).rowcount == 1
        resident_id = None
    if not taken:  # refused before any resident's lock: a full slot writes nothing
        _refuse_full(slot_id)
    person = replace(person, kk_hash=household_hash(row, kk))
    point = PointSummary(row.market_point_id, row.code, row.name, row.address, row.timezone)
    slot = SlotSummary(row.id, row.starts_at, row.ends_at, row.market_point_id, point)
    if postgresql and row.booking_id is not None:  # the one statement did it all
        booking_id = row.booking_id
        _written(slot, booking_id, [(row.notice_id, row.due_at)], now)
    elif postgresql and person.kk_hash is None and row.fresh:
        raise _limit_reached()  # counted in a snapshot that no booking of this NIK passed
    else:
        # SQLite, a point with a household limit, or a booking of this NIK committed
        # while this one waited for its lock: the rules one statement each, every
        # count in a snapshot that sees what the lock waited for.
        if resident_id is None:
            resident_id = _lock_resident(person.nik_hash, person.nik_last4)
        _check_limit(resident_id, row.starts_at)
        _check_household(person.kk_hash, row.starts_at)
        booking_id, code = _insert_booking(slot, resident_id, person, now, "confirmation")
    _forget_count(slot_id)
    return BookingSummary(booking_id, code, CONFIRMED, person.name, person.nik_last4, slot)


def _check_bookable(row, now: datetime) -> None:
    """Raise SlotNotFound (404) unless ``row`` (slot and point, or None) is a published
    slot at an active point, SlotClosed (409) when it has ended by ``now``."""
    if row is None or row.published_at > now or not row.active:
        raise SlotNotFound()
    if row.ends_at <= now:
        raise SlotClosed()


def _refuse_full(slot_id: int) -> NoReturn:
    """Raise why no place was taken in a bookable slot: SlotClosedByMarket when the
    market closed it (maybe while this request waited for its lock), else SlotFull.
    A statement of its own: only a fresh snapshot sees a close that committed while
    the claim waited for the row lock (the claim's own snapshot predates it)."""
    closed_at = db.session.connection().execute(_SLOT_CLOSED_AT, {"slot_id": slot_id}).scalar()
    raise SlotClosedByMarket() if closed_at is not None else SlotFull()


# PostgreSQL: the whole booking in one statement. The resident's upsert reads the
# place's update, so the locks come in the rule's order, and runs only when a place was
# taken (a refusal writes nothing). The limit is counted in the statement's snapshot,
# taken before any wait for the resident's lock; that count is good only if no
# booking of this NIK committed in between. Every change that gives a resident a
# booking (booking, promotion, move) first bumps the resident row's lock_version, so
# the count is trusted ("fresh") only when the upsert returns the very row the
# snapshot saw (same id: a row purged and made anew meanwhile is not the same) at the
# version it saw plus its own bump, or made the row itself; otherwise nothing is
# written and ``place_booking`` counts again with ``_check_limit``, a statement of its
# own with a new snapshot. Points with a household limit write nothing here either:
# their rules continue in separate statements.
_BOOK_ON_POSTGRESQL = text(
    """
    WITH seen AS (
        SELECT id, lock_version FROM resident WHERE nik_hash = :nik_hash
    ), taken AS (
        UPDATE slot SET booked_count = booked_count + 1
        WHERE id = :slot_id AND booked_count < capacity AND closed_at IS NULL
          AND published_at <= :now AND ends_at > :now
          AND market_point_id IN (SELECT id FROM market_point WHERE active)
        RETURNING id, starts_at, market_point_id
    ), resident AS (
        INSERT INTO resident (nik_hash, nik_last4, lock_version, created_at)
        SELECT :nik_hash, :nik_last4, 0, :now FROM taken
        ON CONFLICT (nik_hash) DO UPDATE SET lock_version = resident.lock_version + 1
        RETURNING id, lock_version
    ), held AS (
        SELECT count(booking.id) AS n
        FROM booking JOIN slot ON slot.id = booking.slot_id, taken
        WHERE booking.resident_id = (SELECT id FROM resident)
          AND booking.status = ANY(CAST(:active AS varchar[]))
          AND slot.starts_at > taken.starts_at - CAST(:window AS interval)
          AND slot.starts_at < taken.starts_at + CAST(:window AS interval)
    ), verdict AS (
        SELECT resident.id AS resident_id,
               CASE WHEN NOT EXISTS (SELECT FROM seen) THEN resident.lock_version = 0
                    ELSE resident.id = (SELECT id FROM seen)
                         AND resident.lock_version = (SELECT lock_version FROM seen) + 1
               END AS fresh,
               held.n AS held,
               NOT market_point.household_limit AS plain
        FROM resident, held, taken JOIN market_point ON market_point.id = taken.market_point_id
    ), new_booking AS (
        INSERT INTO booking (code, slot_id, resident_id, name, nik_last4, phone, language,
                             status, created_at)
        SELECT :code, :slot_id, verdict.resident_id, :name, :nik_last4, :phone, :language,
               :status, :now
        FROM verdict WHERE verdict.fresh AND verdict.plain AND verdict.held < :limit
        RETURNING id
    ), new_notice AS (
        INSERT INTO notice (booking_id, kind, status, created_at, due_at)
        SELECT new_booking.id, :kind, :pending, :now, :now FROM new_booking
        RETURNING id, due_at
    )
    SELECT slot.id, slot.starts_at, slot.ends_at, slot.published_at, slot.market_point_id,
           market_point.code, market_point.name, market_point.address,
           market_point.timezone, market_point.active, market_point.household_limit,
           (SELECT count(*) FROM taken) AS taken,
           (SELECT resident_id FROM verdict) AS resident_id,
           COALESCE((SELECT fresh FROM verdict), false) AS fresh,
           (SELECT id FROM new_booking) AS booking_id,
           (SELECT id FROM new_notice) AS notice_id,
           (SELECT due_at FROM new_notice) AS due_at
    FROM slot JOIN market_point ON market_point.id = slot.market_point_id
    WHERE slot.id = :slot_id
    """
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
    taken=Integer(),
    resident_id=Integer(),
    fresh=Boolean(),
    booking_id=Integer(),
    notice_id=Integer(),
    due_at=UTCDateTime(),
)


def _book_params(slot_id: int, person: ResidentInput, code: str, now: datetime) -> dict:
    """The bound values of ``_BOOK_ON_POSTGRESQL``."""
    config = current_app.config
    return {
        "slot_id": slot_id,
        "now": now,
        "nik_hash": person.nik_hash,
        "nik_last4": person.nik_last4,
        "active": list(ACTIVE_STATUSES),
        "window": timedelta(days=config["BOOKING_LIMIT_WINDOW_DAYS"]),
        "code": code,
        "name": person.name,
        "phone": person.phone,
        "language": person.language,
        "status": CONFIRMED,
        "limit": config["BOOKING_LIMIT_PER_NIK"],
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
) -> Booking:
    """``place_booking``, returning the new Booking model (one more query).

    Args, Raises and Rules: as ``place_booking``.
    Returns: the new confirmed Booking (written, not committed).
    """
    placed = place_booking(slot_id, name, nik, phone, now, language, phone_optional, kk)
    return db.session.get(Booking, placed.id)


def _forget_count(slot_id: int) -> None:
    """Expire ``booked_count`` of the slot's model if this session holds it: the count
    changed in the database behind the ORM's back."""
    slot = db.session.identity_map.get(db.session.identity_key(Slot, slot_id))
    if slot is not None:
        db.session.expire(slot, ["booked_count"])


_INSERT_BOOKING = insert(Booking).returning(Booking.id)
_INSERT_NOTICES = insert(Notice).returning(Notice.id, Notice.due_at)


@dataclass(frozen=True)
class QueuedNotice:
    """A notice written in this transaction, for ``notices.commit_and_deliver`` to hand
    on after the commit: its id and due instant (aware UTC)."""

    id: int
    due_at: datetime


def _insert_booking(
    slot: Slot | SlotSummary, resident_id: int, person: ResidentInput, now: datetime, notice: str
) -> tuple[int, str]:
    """Write a confirmed booking whose place is already counted and its ``notice``;
    tell the live feed. Returns (booking id, booking code)."""
    conn = db.session.connection()
    code = new_booking_code()
    booking_id = conn.execute(
        _INSERT_BOOKING,
        {
            "code": code,
            "slot_id": slot.id,
            "resident_id": resident_id,
            "name": person.name,
            "nik_last4": person.nik_last4,
            "phone": person.phone,
            "language": person.language,
            "kk_hash": person.kk_hash,
            "status": CONFIRMED,
            "created_at": now,
        },
    ).scalar_one()
    written = conn.execute(_INSERT_NOTICES, [_notice_values(booking_id, notice, now)]).all()
    _written(slot, booking_id, written, now)
    return booking_id, code


def _written(
    slot: Slot | SlotSummary,
    booking_id: int,
    notices: list[tuple[int, datetime]],
    now: datetime,
) -> None:
    """Note what a new booking wrote for after the commit: its ``notices`` ((id, due
    instant) pairs) for ``notices.commit_and_deliver``, its event for the live feed."""
    db.session.info.setdefault("new_notices", []).extend(
        QueuedNotice(notice_id, due_at) for notice_id, due_at in notices
    )
    events.record(
        events.live_event(
            "booking",
            slot.market_point_id,
            slot.market_point.code,
            now,
            slot_id=slot.id,
            booking_id=booking_id,
        )
    )


def _notice_values(booking_id: int, kind: str, now: datetime) -> dict:
    return {
        "booking_id": booking_id,
        "kind": kind,
        "status": NOTICE_PENDING,
        "created_at": now,
        "due_at": now,
    }


def _new_booking(
    slot: Slot, resident_id: int, person: ResidentInput, now: datetime, notice: str
) -> Booking:
    """``_insert_booking``, returning the Booking model."""
    booking_id, _ = _insert_booking(slot, resident_id, person, now, notice)
    return db.session.get(Booking, booking_id)


def _record_event(kind: str, booking: Booking, slot: Slot, now: datetime) -> None:
    """Tell the live feed (after the commit) that ``booking`` was made or cancelled."""
    events.record(
        events.live_event(
            kind,
            slot.market_point_id,
            slot.market_point.code,
            now,
            slot_id=slot.id,
            booking_id=booking.id,
        )
    )


def _record_slot_change(kind: str, slot: Slot, now: datetime, **extra: object) -> None:
    """Tell the live feed (after the commit) that ``slot``'s numbers changed: ``kind``
    ``no_show``, ``waiting_list`` (``action`` joined, left or expired) or
    ``slot_closed``; ``extra`` are more JSON-safe fields (no personal data)."""
    events.record(
        events.live_event(
            kind, slot.market_point_id, slot.market_point.code, now, slot_id=slot.id, **extra
        )
    )


def queue_notice(
    booking: Booking, kind: str, now: datetime | None = None, due_at: datetime | None = None
) -> None:
    """Add the outbox row for message ``kind`` about ``booking`` (once per kind).

    Args: kind, one of ``NOTICE_KINDS``; now, aware UTC; due_at, aware UTC, the
      earliest instant to send it (default now).
    The row commits with the change it tells about (it is flushed with it), so a
    message exists exactly when its change does (the transactional outbox, issue 7);
    ``slots.notices.commit_and_deliver`` hands it on after the commit.
    """
    now = now or utcnow()
    notice = Notice(booking=booking, kind=kind, created_at=now, due_at=due_at or now)
    db.session.add(notice)
    db.session.info.setdefault("new_notices", []).append(notice)


def void_reminder(booking_id: int) -> None:
    """Drop the pending reminder of a booking that no longer needs one (cancelled, no
    show, closed): it is marked ``void``, never sent."""
    db.session.execute(
        update(Notice)
        .where(
            Notice.booking_id == booking_id,
            Notice.kind == "reminder",
            Notice.status == NOTICE_PENDING,
        )
        .values(status=NOTICE_VOID)
        .execution_options(synchronize_session=False)
    )


def request_fingerprint(fields: dict[str, object]) -> str:
    """Return an HMAC-SHA256 (hex, keyed with NIK_HASH_KEY) of a request's fields as
    canonical JSON, to tell a replay of an Idempotency-Key from another request under
    the same key. Keyed, because the fields hold a NIK: a plain hash of them could be
    reversed by trying every NIK."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    key = current_app.config["NIK_HASH_KEY"].encode()
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


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
    if not re.fullmatch(r"[\x21-\x7e]{1,200}", key or ""):
        raise InvalidIdempotencyKey()
    now = now or utcnow()
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # The first write claims the key; a concurrent twin waits here, then finds it.
    claimed = db.session.execute(
        insert(IdempotencyKey)
        .values(key=key, request_hash=fingerprint, created_at=now)
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.key])
        .returning(IdempotencyKey.id)
    ).scalar_one_or_none()
    if claimed is None:
        previous = db.session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key))
        if previous.request_hash != fingerprint or previous.booking is None:
            raise IdempotencyKeyReused()
        return previous.booking, True
    booking = book_slot(slot_id, name, nik, phone, now, language, phone_optional, kk)
    db.session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claimed)
        .values(booking_id=booking.id)
        .execution_options(synchronize_session=False)
    )
    return booking, False


def find_booking(code: str) -> Booking | None:
    """Return the booking with booking code ``code`` (any typing of it), or None."""
    canonical = normalise_code(code)
    if canonical is None:
        return None
    return db.session.scalar(select(Booking).where(Booking.code == canonical))


def _match_phone(found, phone: str, error: type[DomainError]):
    """Return ``found`` when it exists and was made with ``phone``; else raise ``error``
    (one answer for an unknown code, a malformed phone and a wrong phone, so the
    answer does not reveal which codes exist)."""
    try:
        e164 = normalise_phone(phone)
    except InvalidPhone:  # a malformed phone is just another non-match here
        e164 = None
    if (
        found is None
        or e164 is None
        or not hmac.compare_digest(found.phone.encode(), e164.encode())
    ):
        raise error()
    return found


def get_booking_for_resident(code: str, phone: str) -> Booking:
    """Return the booking matching both its code and the phone it was made with.

    Raises: BookingNotFound for any mismatch.
    """
    return _match_phone(find_booking(code), phone, BookingNotFound)


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
    who is still within the per-NIK limit (see ``_promote``); only when nobody can
    take it does the slot's count go down.
    Args: booking; now, aware UTC (default now).
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
    _record_event("cancellation", booking, booking.slot, now)
    _lock_slot(booking.slot)
    _free_place(booking.slot, now)
    db.session.refresh(booking)
    return booking


def _free_place(slot: Slot, now: datetime) -> None:
    """Hand one freed place of ``slot`` to the waiting list, or give it back."""
    if _promote(slot, now) is None:
        db.session.execute(
            update(Slot)
            .where(Slot.id == slot.id)
            .values(booked_count=Slot.booked_count - 1)
            .execution_options(synchronize_session=False)
        )
    db.session.flush()
    db.session.expire(slot, ["booked_count"])


def _may_take(entry: WaitingListEntry, slot: Slot) -> bool:
    """True when the entry's resident is within the per-NIK limit around ``slot`` and
    holds no place in it already."""
    config = current_app.config
    if entry.kk_hash is not None and (
        _household_held(entry.kk_hash, slot.starts_at) >= config["BOOKING_LIMIT_PER_KK"]
    ):
        return False
    limit = config["BOOKING_LIMIT_PER_NIK"]
    return _held_in_window(entry.resident_id, slot.starts_at) < limit and not _holds_place_in(
        entry.resident_id, slot.id
    )


def _promote(slot: Slot, now: datetime) -> Booking | None:
    """Give one place that is already counted in ``slot.booked_count`` to the first
    waiting resident who is within the per-NIK limit; return their new booking.

    Entries over the limit when their turn comes are marked ``skipped``. Nobody is
    promoted into a slot that has ended. Returns None when nobody could take it.
    Rule (issue 3): a freed place goes to the first in line still within the limit.
    """
    if slot.ends_at <= now or slot.closed_at is not None:
        return None
    while True:
        entry = db.session.scalar(
            select(WaitingListEntry)
            .where(WaitingListEntry.slot_id == slot.id, WaitingListEntry.status == WAITING)
            .order_by(WaitingListEntry.id)
            .limit(1)
        )
        if entry is None:
            return None
        resident = db.session.get(Resident, entry.resident_id)
        # Check first without the resident's lock, so residents who are skipped are
        # never locked (holding their locks across slots could deadlock); lock only
        # the one to promote, and check again under the lock.
        within = _may_take(entry, slot)
        if within:
            _lock_resident(resident.nik_hash, resident.nik_last4)
            if entry.kk_hash is not None:
                _lock_household(entry.kk_hash, now)
            within = _may_take(entry, slot)
        claimed = transition(
            WaitingListEntry, entry.id, WAITING, PROMOTED if within else SKIPPED, resolved_at=now
        )
        if not claimed or not within:
            continue  # another transaction took this entry, or it may not book
        person = ResidentInput(
            entry.name,
            resident.nik_hash,
            entry.nik_last4,
            entry.phone,
            entry.language,
            entry.kk_hash,
        )
        booking = _new_booking(slot, entry.resident_id, person, now, "promotion")
        db.session.execute(
            update(WaitingListEntry)
            .where(WaitingListEntry.id == entry.id)
            .values(booking_id=booking.id)
            .execution_options(synchronize_session=False)
        )
        db.session.expire(entry)
        return booking


# Waiting list ------------------------------------------------------------------


def join_waiting_list(
    slot_id: int,
    name: str,
    nik: str,
    phone: str,
    now: datetime | None = None,
    language: str = "id",
    kk: str = "",
) -> WaitingListEntry:
    """Put a resident on a full slot's waiting list.

    Returns: the new entry (flushed); its ``code`` lets the resident check the
      position (see ``waiting_position``).
    Raises: InvalidName/InvalidNIK/InvalidPhone (422), SlotNotFound (404),
      SlotClosed, SlotNotFull (book instead), AlreadyBooked, LimitReached,
      AlreadyWaiting (409).
    """
    now = now or utcnow()
    if not _valid_id(slot_id):
        raise SlotNotFound()
    person = resident_input(name, nik, phone, language)
    slot = get_slot(slot_id, now)
    if slot.ends_at <= now:
        raise SlotClosed()
    person = replace(person, kk_hash=household_hash(slot.market_point, kk))
    # Under the slot's lock, a concurrent cancellation either sees this entry (and
    # promotes it) or has already freed its place (and this join is refused).
    _lock_slot(slot)
    db.session.refresh(slot, ["closed_at"])
    if slot.closed_at is not None:
        raise SlotClosedByMarket()
    resident_id = _lock_resident(person.nik_hash, person.nik_last4)
    if slot.booked_count < slot.capacity:
        raise SlotNotFull()
    if _holds_place_in(resident_id, slot.id):
        raise AlreadyBooked()
    _check_limit(resident_id, slot.starts_at)
    _check_household(person.kk_hash, slot.starts_at)
    already = db.session.scalar(
        select(WaitingListEntry.id).where(
            WaitingListEntry.slot_id == slot.id,
            WaitingListEntry.resident_id == resident_id,
            WaitingListEntry.status == WAITING,
        )
    )
    if already is not None:
        raise AlreadyWaiting()
    entry = WaitingListEntry(
        code=new_booking_code(),
        slot=slot,
        resident_id=resident_id,
        name=person.name,
        nik_last4=person.nik_last4,
        phone=person.phone,
        language=person.language,
        kk_hash=person.kk_hash,
        status=WAITING,
        created_at=now,
    )
    db.session.add(entry)
    db.session.flush()
    _record_slot_change("waiting_list", slot, now, action="joined")
    return entry


def waiting_position(entry: WaitingListEntry) -> int | None:
    """Return the entry's place in line (1 = next), or None when it is not waiting."""
    if entry.status != WAITING:
        return None
    ahead = db.session.scalar(
        select(func.count(WaitingListEntry.id)).where(
            WaitingListEntry.slot_id == entry.slot_id,
            WaitingListEntry.status == WAITING,
            WaitingListEntry.id < entry.id,
        )
    )
    return ahead + 1


def find_waiting_entry(code: str) -> WaitingListEntry | None:
    """Return the waiting-list entry with ``code`` (any typing of it), or None."""
    canonical = normalise_code(code)
    if canonical is None:
        return None
    return db.session.scalar(select(WaitingListEntry).where(WaitingListEntry.code == canonical))


def get_waiting_entry_for_resident(code: str, phone: str) -> WaitingListEntry:
    """Return the waiting-list entry matching its code and phone.

    Raises: WaitingEntryNotFound for any mismatch.
    """
    return _match_phone(find_waiting_entry(code), phone, WaitingEntryNotFound)


def leave_waiting_list(entry: WaitingListEntry, now: datetime | None = None) -> WaitingListEntry:
    """Take a waiting resident off the list.

    Raises: NotWaiting (409) when the entry was already promoted, left or expired.
    """
    now = now or utcnow()
    left = transition(WaitingListEntry, entry.id, WAITING, LEFT, resolved_at=now)
    db.session.refresh(entry)
    if not left:
        raise NotWaiting()
    _record_slot_change("waiting_list", entry.slot, now, action="left")
    return entry


def expire_past_slots(now: datetime | None = None) -> tuple[int, int]:
    """Close what the clock has ended: confirmed bookings never checked in by the end
    of their slot plus CHECKIN_LATE_MINUTES become ``no_show`` (freeing the place),
    and waiting-list entries of ended slots become ``expired``.

    Args: now, aware UTC. Returns: (no-shows marked, entries expired). Safe to repeat.
    """
    now = now or utcnow()
    closed = closed_for_ends_by(now, current_app.config)
    overdue = db.session.scalars(
        select(Booking.id)
        .join(Slot, Booking.slot_id == Slot.id)
        .where(Booking.status == CONFIRMED, Slot.ends_at <= closed)
        .order_by(Booking.id)
    ).all()
    marked = 0
    changed: dict[int, str] = {}  # slot id -> live event kind
    for booking_id in overdue:
        if transition(Booking, booking_id, CONFIRMED, NO_SHOW):
            marked += 1
            changed[db.session.get(Booking, booking_id).slot_id] = "no_show"
            void_reminder(booking_id)
            db.session.execute(
                update(Slot)
                .where(
                    Slot.id
                    == select(Booking.slot_id).where(Booking.id == booking_id).scalar_subquery()
                )
                .values(booked_count=Slot.booked_count - 1)
                .execution_options(synchronize_session=False)
            )
    ending = (
        WaitingListEntry.status == WAITING,
        WaitingListEntry.slot_id.in_(select(Slot.id).where(Slot.ends_at <= now)),
    )
    for slot_id in db.session.scalars(select(WaitingListEntry.slot_id).where(*ending).distinct()):
        changed.setdefault(slot_id, "waiting_list")
    expired = db.session.execute(
        update(WaitingListEntry)
        .where(*ending)
        .values(status=EXPIRED, resolved_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.flush()
    db.session.expire_all()
    for slot_id, kind in changed.items():
        extra = {"action": "expired"} if kind == "waiting_list" else {}
        _record_slot_change(kind, db.session.get(Slot, slot_id), now, **extra)
    return marked, expired


def _someone_may_take(slot: Slot) -> bool:
    """True when a resident waiting for ``slot`` is within the per-NIK limit for it."""
    entries = db.session.scalars(
        select(WaitingListEntry)
        .where(WaitingListEntry.slot_id == slot.id, WaitingListEntry.status == WAITING)
        .order_by(WaitingListEntry.id)
    )
    return any(entry.resident_id is not None and _may_take(entry, slot) for entry in entries)


def release_late_arrivals(now: datetime | None = None) -> int:
    """Hand the places of residents who have not arrived to those waiting for them.

    A confirmed booking not checked in NO_SHOW_GRACE_MINUTES after its slot started
    (or after it was made, for a booking made or promoted into a running slot), in a
    slot still running with someone on its waiting list who may take the place,
    becomes ``no_show`` and its place goes to them (a ``promotion`` notice; see
    ``_promote``). Otherwise the booking is left alone: freeing the place would help
    nobody and would turn away a late resident whose ticket is still valid.
    Args: now, aware UTC (default now). Returns: the number of bookings released.
    Rule: issue 7 ("freeing a place whose resident has not arrived within the grace").
    """
    now = now or utcnow()
    grace = timedelta(minutes=current_app.config["NO_SHOW_GRACE_MINUTES"])
    someone_waiting = (
        select(WaitingListEntry.id)
        .where(WaitingListEntry.slot_id == Slot.id, WaitingListEntry.status == WAITING)
        .exists()
    )
    late = db.session.execute(
        select(Booking.id, Booking.slot_id)
        .join(Slot, Booking.slot_id == Slot.id)
        .where(
            Booking.status == CONFIRMED,
            Slot.starts_at <= now - grace,
            Booking.created_at <= now - grace,
            Slot.ends_at > now,
            someone_waiting,
        )
        .order_by(Booking.slot_id, Booking.id)
    ).all()
    released = 0
    for booking_id, slot_id in late:
        slot = db.session.get(Slot, slot_id)
        _lock_slot(slot)
        # Under the slot's lock: release only while somebody waiting may take it.
        if not _someone_may_take(slot):
            continue
        if transition(Booking, booking_id, CONFIRMED, NO_SHOW):
            void_reminder(booking_id)
            _free_place(slot, now)
            released += 1
            _record_slot_change("no_show", slot, now, booking_id=booking_id)
    return released


@dataclass(frozen=True)
class PurgeCounts:
    """What one ``purge_personal_data`` run erased (counts of rows)."""

    bookings: int
    waiting_entries: int
    residents: int
    idempotency_keys: int


def purge_personal_data(now: datetime | None = None) -> PurgeCounts:
    """Erase residents' personal data RETENTION_DAYS after their slot ended.

    Bookings and waiting-list entries keep their code, slot, status and times (the
    counts supervisors report on) but lose name, phone, NIK digits and the link to the
    resident; residents with nothing left are deleted (their NIK hash with them);
    idempotency keys that old go too, and a notice still owed to a purged booking is
    voided (there is nobody to send it to). Safe to repeat.
    Args: now, aware UTC (default now). Returns: PurgeCounts.
    Rule: issue 7 (personal data purged RETENTION_DAYS after the slot); DESIGN.md privacy.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config["RETENTION_DAYS"])
    ended = select(Slot.id).where(Slot.ends_at <= cutoff).scalar_subquery()
    erased = {
        "name": "",
        "phone": "",
        "nik_last4": "",
        "resident_id": None,
        "kk_hash": None,
        "purged_at": now,
    }
    bookings = db.session.execute(
        update(Booking)
        .where(Booking.slot_id.in_(ended), Booking.purged_at.is_(None))
        .values(**erased)
        .execution_options(synchronize_session=False)
    ).rowcount
    entries = db.session.execute(
        update(WaitingListEntry)
        .where(WaitingListEntry.slot_id.in_(ended), WaitingListEntry.purged_at.is_(None))
        .values(**erased)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.execute(
        update(Notice)
        .where(
            Notice.status == NOTICE_PENDING,
            Notice.booking_id.in_(select(Booking.id).where(Booking.purged_at.is_not(None))),
        )
        .values(status=NOTICE_VOID)
        .execution_options(synchronize_session=False)
    )
    # Lock rows no booking or waiting-list entry names any more, first seen before the
    # cut-off. A resident may be booking right now (the row locked, the booking not yet
    # committed): then the delete fails on the foreign key and only this step is undone;
    # the next run deletes the others.
    try:
        with db.session.begin_nested():
            residents = _delete_unnamed(Resident, Resident.id, "resident_id", cutoff)
    except IntegrityError:
        residents = 0
    _delete_unnamed(Household, Household.kk_hash, "kk_hash", cutoff)
    keys = db.session.execute(
        delete(IdempotencyKey)
        .where(IdempotencyKey.created_at <= cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.expire_all()
    return PurgeCounts(bookings, entries, residents, keys)


def _delete_unnamed(model, key, column: str, cutoff: datetime) -> int:
    """Delete the ``model`` lock rows (residents, households) created before ``cutoff``
    whose ``key`` no booking or waiting-list entry names in ``column``; return how many."""
    unused = [
        ~select(Booking.id).where(getattr(Booking, column) == key).exists(),
        ~select(WaitingListEntry.id).where(getattr(WaitingListEntry, column) == key).exists(),
    ]
    return db.session.execute(
        delete(model)
        .where(model.created_at <= cutoff, *unused)
        .execution_options(synchronize_session=False)
    ).rowcount


def slot_local_times(slot: Slot) -> tuple[datetime, datetime]:
    """Return (starts_at, ends_at) of ``slot`` in its market point's timezone."""
    tz = zone(slot.market_point.timezone)
    return slot.starts_at.astimezone(tz), slot.ends_at.astimezone(tz)

"""What a phone channel asks of the booking services (issue 17): the same services,
rules and limits as the web (``slots.booking``, ``slots.waiting``, ``slots.points``),
taking the sender's phone number as the booking's phone.

Each write runs in a savepoint (``attempt``), so a refusal undoes what the service
wrote while the message's own rows (its claim, the conversation, the reply) still
commit with the request: a refused booking is answered, never half-written. A service
writes its notices and live events only once it has passed every rule, so nothing is
noted for after the commit by work a savepoint undoes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from channels.errors import EntryNotCancellable
from common.errors import DomainError
from common.timeutil import local_date, local_day_bounds
from extensions import db
from slots import booking as slots_booking
from slots import waiting as slots_waiting
from slots.availability import bookable_days, list_slots
from slots.errors import BallotRunning, BookingNotFound, SlotFull, SoldOut
from slots.models import MarketPoint, Slot
from slots.points import search_market_points
from slots.stock import sold_out_days

log = logging.getLogger("antri.channels")
T = TypeVar("T")

MAX_POINTS = 5  # market points one answer lists (issue 17 §2: "up to five")
DAYS_AHEAD = 7  # local days a booking menu offers, today included


class Unexpected(DomainError):
    """Something went wrong that the resident cannot fix by typing (a conflict, a bug):
    answered with the generic reply, logged for the operators."""

    code = "channel_unexpected"
    status = 500


def attempt(action: Callable[[], T]) -> T:
    """Run ``action`` (a write through a booking service) in a savepoint.

    Returns: what it returns. Raises: the DomainError it raised (its writes undone);
      Unexpected for an IntegrityError or any other failure except the database's
      OperationalError (busy, lock time-out, deadlock), which goes on up so the
      request answers 503 and the gateway sends the message again.
    """
    from sqlalchemy.exc import OperationalError

    try:
        with db.session.begin_nested():
            return action()
    except (DomainError, OperationalError):
        raise
    except IntegrityError as exc:
        log.warning("channel action conflicted: %s", exc.orig)
        raise Unexpected() from exc
    except Exception as exc:  # never a crash for the resident: logged, answered plainly
        log.exception("channel action failed")
        raise Unexpected() from exc


@dataclass(frozen=True)
class Booked:
    """A booking made: what the reply tells (instants aware UTC; ``tz`` the point's)."""

    code: str
    point: str
    starts_at: datetime
    arrive_at: datetime
    tz: str
    packages: int


@dataclass(frozen=True)
class Waiting:
    """The slot was full or its day sold out: the resident joined its waiting list."""

    code: str
    position: int | None


@dataclass(frozen=True)
class EnteredBallot:
    """The slot's day is released by a ballot (issue 16): the resident entered it with
    that slot as the one preference. ``draw_at``: the close of entries, aware UTC, when
    the draw runs; ``tz`` the point's zone."""

    code: str
    point: str
    draw_at: datetime
    tz: str


def book_or_wait(
    channel: str,
    slot_id: int,
    name: str,
    nik: str,
    phone: str,
    language: str,
    now: datetime,
    kk: str = "",
) -> Booked | Waiting | EnteredBallot:
    """Book slot ``slot_id`` for the sender (``phone``, E.164) through ``channel``; when
    the slot is full or its day sold out, put them on its waiting list instead (as the
    web's booking page offers). ``kk``: the family card number, asked at points with a
    household limit (as on the web).

    When a ballot holds the slot's day (issue 16), the resident enters the ballot
    instead, with this slot as the one preference: the same rules as the web's entry
    form (``ballots.entering.enter_ballot``), and its message with the entry code.

    Returns: Booked, Waiting or EnteredBallot. Raises: what
      ``slots.booking.place_booking``, ``slots.waiting.join_waiting_list`` and
      ``ballots.entering.enter_ballot`` raise (InvalidNIK, LimitReached,
      BallotNotOpen, AlreadyEntered, ...), with their writes undone; Unexpected.
    """

    # One savepoint per write, not one around both: a booking made (the common case)
    # costs one SAVEPOINT and one RELEASE, and a refused one is undone before the
    # waiting list (or the ballot) is joined in a savepoint of its own.
    try:
        placed = attempt(
            lambda: slots_booking.place_booking(
                slot_id, name, nik, phone, now, language, kk=kk, channel=channel
            )
        )
    except (SlotFull, SoldOut):

        def wait() -> Waiting:
            entry = slots_waiting.join_waiting_list(slot_id, name, nik, phone, now, language, kk=kk)
            return Waiting(entry.code, slots_waiting.waiting_position(entry))

        return attempt(wait)
    except BallotRunning:
        return attempt(lambda: _enter_ballot(slot_id, name, nik, phone, language, now, kk))
    point = placed.slot.market_point
    return Booked(
        placed.code,
        point.name,
        placed.slot.starts_at,
        placed.arrive_at,
        point.timezone,
        placed.packages,
    )


def _enter_ballot(
    slot_id: int, name: str, nik: str, phone: str, language: str, now: datetime, kk: str = ""
) -> EnteredBallot:
    """Enter the ballot holding slot ``slot_id`` with that slot as the one preference."""
    from ballots.entering import enter_ballot
    from ballots.models import Ballot

    ballot = db.session.scalar(
        select(Ballot).join(Slot, Slot.ballot_id == Ballot.id).where(Slot.id == slot_id)
    )
    if ballot is None:  # drawn meanwhile: the slot is first-come again
        raise BallotRunning()
    entered = enter_ballot(
        ballot.id, name, nik, phone, [slot_id], kk=kk, language=language, now=now
    )
    point = ballot.market_point
    return EnteredBallot(entered.code, point.name, ballot.closes_at, point.timezone)


@dataclass(frozen=True)
class Found:
    """A booking, waiting-list entry or ballot entry (issue 16) looked up by its code
    and the sender's phone; ``outcome`` is the ballot entry's (``ballots.results``)."""

    booking: object | None = None
    entry: object | None = None
    ballot_entry: object | None = None
    outcome: object | None = None


def look_up(code: str, phone: str) -> Found:
    """Find the sender's booking, or else waiting-list entry, or else ballot entry,
    with ``code``.

    Raises: BookingNotFound when none matches the code and this phone (one answer:
      it reveals no codes).
    """
    try:
        return Found(booking=slots_booking.get_booking_for_resident(code, phone))
    except BookingNotFound:
        try:
            return Found(entry=slots_waiting.get_waiting_entry_for_resident(code, phone))
        except DomainError:
            pass
    from ballots.models import BallotEntry
    from ballots.results import entry_outcome
    from slots.codes import match_phone, normalise_code

    canonical = normalise_code(code)
    found = None
    if canonical is not None:
        found = db.session.scalar(select(BallotEntry).where(BallotEntry.code == canonical))
    entry = match_phone(found, phone, BookingNotFound)
    return Found(ballot_entry=entry, outcome=entry_outcome(entry))


def cancel(code: str, phone: str, now: datetime) -> Found:
    """Cancel the sender's booking ``code`` (its place goes to the waiting list), or
    take them off the waiting list of entry ``code``.

    Returns: what was cancelled. Raises: BookingNotFound, CancelNotAllowed,
      NotWaiting; EntryNotCancellable for a ballot entry's code; Unexpected.
    """

    def run() -> Found:
        found = look_up(code, phone)
        if found.ballot_entry is not None:
            raise EntryNotCancellable()
        if found.booking is not None:
            slots_booking.cancel_booking(found.booking, now)
        else:
            slots_waiting.leave_waiting_list(found.entry, now)
        return found

    return attempt(run)


def find_points(query: str) -> list[MarketPoint]:
    """Active market points whose name, kecamatan or city holds ``query``; five at most."""
    return search_market_points(query)[:MAX_POINTS] if query.strip() else []


@dataclass(frozen=True)
class PointRef:
    """A market point as a conversation keeps it between two messages (issue 17 §1):
    what the menu's later steps show and query by, so they need no look-up of the
    point on every hop. ``slots.availability`` and ``slots.stock`` read ``id`` and
    ``timezone`` only. Whether the point still takes bookings is the booking's own
    check (``slots.availability.check_bookable``)."""

    id: int
    code: str
    name: str
    timezone: str

    def as_data(self) -> list:
        """The compact JSON form kept in the conversation's data."""
        return [self.id, self.code, self.name, self.timezone]

    @classmethod
    def from_data(cls, data) -> PointRef | None:
        """The PointRef ``as_data`` wrote; None for anything else (an older state)."""
        if isinstance(data, list) and len(data) == 4:
            return cls(int(data[0]), str(data[1]), str(data[2]), str(data[3]))
        return None


def point_by_code(code: str) -> MarketPoint | None:
    """The active market point with ``code`` (any case), or None."""
    return db.session.scalar(
        select(MarketPoint).where(
            MarketPoint.code == code.strip().upper(), MarketPoint.active.is_(True)
        )
    )


def open_days(point: MarketPoint, now: datetime, limit: int = 5) -> list[date]:
    """The next local days (of DAYS_AHEAD from today) with a bookable slot at ``point``,
    or with slots held by a ballot taking entries now (issue 16), at most ``limit``,
    earliest first."""
    today = local_date(now, point.timezone)
    days = [today + timedelta(days=n) for n in range(DAYS_AHEAD)]
    balloted = _open_ballot_days(point, days, now)
    counts = bookable_days(point, days, now)
    return [day for day in days if counts[day] or day in balloted][:limit]


def _open_ballot_days(point: MarketPoint, days: list[date], now: datetime) -> set[date]:
    """The days of ``days`` whose ballot at ``point`` takes entries at ``now``."""
    from ballots.models import Ballot

    return set(
        db.session.scalars(
            select(Ballot.day).where(
                Ballot.market_point_id == point.id,
                Ballot.day.in_(days),
                Ballot.frozen_at.is_(None),
                Ballot.opens_at <= now,
                Ballot.closes_at > now,
            )
        )
    )


@dataclass(frozen=True)
class SlotChoice:
    """A slot offered on a phone: id, start (aware UTC), places left, sold-out day, and
    whether a ballot holds it (issue 16: choosing it enters the ballot)."""

    id: int
    starts_at: datetime
    left: int
    sold_out: bool
    ballot: bool = False


def day_slots(point: MarketPoint, day: date, now: datetime) -> list[SlotChoice]:
    """The slots of ``point`` on local ``day`` that still take bookings at ``now``
    (a full one too: booking it joins its waiting list)."""
    out = sold_out_days(point, [day])
    return [
        SlotChoice(
            slot.id,
            slot.starts_at,
            max(slot.capacity - slot.booked_count, 0),
            day in out,
            slot.ballot_id is not None,
        )
        for slot in list_slots(point, day, now)
        if slot.ends_at > now
    ]


def slot_at(point: MarketPoint, day: date, clock: str) -> Slot | None:
    """The slot of ``point`` starting at local ``clock`` (``HH:MM``) on ``day``, or None."""
    start, end = local_day_bounds(day, point.timezone)
    for slot in db.session.scalars(
        select(Slot).where(
            Slot.market_point_id == point.id, Slot.starts_at >= start, Slot.starts_at < end
        )
    ):
        if slot.starts_at.astimezone(_zone(point.timezone)).strftime("%H:%M") == clock:
            return slot
    return None


def _zone(tz: str):
    from common.timeutil import zone

    return zone(tz)

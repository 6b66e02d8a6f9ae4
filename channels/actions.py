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


def book_or_wait(
    channel: str,
    slot_id: int,
    name: str,
    nik: str,
    phone: str,
    language: str,
    now: datetime,
    kk: str = "",
) -> Booked | Waiting:
    """Book slot ``slot_id`` for the sender (``phone``, E.164) through ``channel``; when
    the slot is full or its day sold out, put them on its waiting list instead (as the
    web's booking page offers). ``kk``: the family card number, asked at points with a
    household limit (as on the web).

    Returns: Booked or Waiting. Raises: what ``slots.booking.place_booking`` and
      ``slots.waiting.join_waiting_list`` raise (InvalidNIK, LimitReached, ...), with
      their writes undone; BallotRunning with the ballot's day and page in its message
      (issue 16: the resident can enter it); Unexpected.
    """

    def book() -> Booked | Waiting:
        try:
            placed = attempt(
                lambda: slots_booking.place_booking(
                    slot_id, name, nik, phone, now, language, kk=kk, channel=channel
                )
            )
        except (SlotFull, SoldOut):
            entry = slots_waiting.join_waiting_list(slot_id, name, nik, phone, now, language, kk=kk)
            return Waiting(entry.code, slots_waiting.waiting_position(entry))
        point = placed.slot.market_point
        return Booked(
            placed.code,
            point.name,
            placed.slot.starts_at,
            placed.arrive_at,
            point.timezone,
            placed.packages,
        )

    try:
        return attempt(book)
    except BallotRunning:
        slot = db.session.get(Slot, slot_id)
        held = ballot_text(slot.market_point, slot) if slot is not None else None
        raise BallotRunning(held) if held else BallotRunning() from None


def ballot_held(point: MarketPoint, day: date) -> Slot | None:
    """A slot of ``point`` on local ``day`` that a ballot holds (issue 16), or None."""
    start, end = local_day_bounds(day, point.timezone)
    return db.session.scalar(
        select(Slot)
        .where(
            Slot.market_point_id == point.id,
            Slot.starts_at >= start,
            Slot.starts_at < end,
            Slot.ballot_id.is_not(None),
        )
        .limit(1)
    )


def ballot_text(point: MarketPoint, slot: Slot) -> str | None:
    """The reply telling that ``slot``'s day goes by ballot, with the ballot's page
    (``replies.by_ballot``); None when no ballot holds it. Call inside
    ``replies.speaking``."""
    from channels import replies
    from common.links import public_url

    if slot.ballot_id is None:
        return None
    day = slot.starts_at.astimezone(_zone(point.timezone)).date()
    link = public_url("ballots.page", ballot_id=slot.ballot_id)
    return replies.by_ballot(point.name, day, link)


@dataclass(frozen=True)
class Found:
    """A booking or waiting-list entry looked up by its code and the sender's phone."""

    booking: object | None = None
    entry: object | None = None


def look_up(code: str, phone: str) -> Found:
    """Find the sender's booking, or else waiting-list entry, with ``code``.

    Raises: BookingNotFound when neither matches the code and this phone.
    """
    try:
        return Found(booking=slots_booking.get_booking_for_resident(code, phone))
    except BookingNotFound:
        try:
            return Found(entry=slots_waiting.get_waiting_entry_for_resident(code, phone))
        except DomainError:
            raise BookingNotFound() from None


def cancel(code: str, phone: str, now: datetime) -> Found:
    """Cancel the sender's booking ``code`` (its place goes to the waiting list), or
    take them off the waiting list of entry ``code``.

    Returns: what was cancelled. Raises: BookingNotFound, CancelNotAllowed,
      NotWaiting; Unexpected.
    """

    def run() -> Found:
        found = look_up(code, phone)
        if found.booking is not None:
            slots_booking.cancel_booking(found.booking, now)
        else:
            slots_waiting.leave_waiting_list(found.entry, now)
        return found

    return attempt(run)


def find_points(query: str) -> list[MarketPoint]:
    """Active market points whose name, kecamatan or city holds ``query``; five at most."""
    return search_market_points(query)[:MAX_POINTS] if query.strip() else []


def point_by_code(code: str) -> MarketPoint | None:
    """The active market point with ``code`` (any case), or None."""
    return db.session.scalar(
        select(MarketPoint).where(
            MarketPoint.code == code.strip().upper(), MarketPoint.active.is_(True)
        )
    )


def open_days(point: MarketPoint, now: datetime, limit: int = 5) -> list[date]:
    """The next local days (of DAYS_AHEAD from today) with a bookable slot at ``point``,
    at most ``limit``, earliest first."""
    today = local_date(now, point.timezone)
    days = [today + timedelta(days=n) for n in range(DAYS_AHEAD)]
    return [day for day, count in bookable_days(point, days, now).items() if count][:limit]


@dataclass(frozen=True)
class SlotChoice:
    """A slot offered on a phone: id, start (aware UTC), places left, sold-out day."""

    id: int
    starts_at: datetime
    left: int
    sold_out: bool


def day_slots(point: MarketPoint, day: date, now: datetime) -> list[SlotChoice]:
    """The slots of ``point`` on local ``day`` that still take bookings at ``now``
    (a full one too: booking it joins its waiting list)."""
    out = sold_out_days(point, [day])
    return [
        SlotChoice(slot.id, slot.starts_at, max(slot.capacity - slot.booked_count, 0), day in out)
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

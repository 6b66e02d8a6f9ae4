"""Ballot rounds (issue 16 §1): making a ballot over a point-day's slots, its status,
finding ballots. The slots a ballot holds refuse first-come booking and waiting-list
joins (``slot.ballot_id``; ``slots.availability``) until its draw.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update

from ballots import algorithm
from ballots.errors import (
    BallotExists,
    BallotNotFound,
    InvalidBallot,
    NoSlotsForBallot,
    SlotsHaveBookings,
)
from ballots.models import CLOSED, DRAWN, OPEN, SCHEDULED, Ballot, BallotEntry
from common.audit import CLI, Actor, record
from common.locking import lock_row
from common.timeutil import local_day_bounds, utcnow
from extensions import db
from slots.availability import valid_id
from slots.locks import lock_market_point
from slots.models import ACTIVE_STATUSES, Booking, MarketPoint, Slot, WaitingListEntry
from slots.points import get_point

MAX_WINDOW_DAYS = 31  # an entry window of at most a month


def ballot_status(ballot: Ballot, now: datetime | None = None) -> str:
    """The ballot's status at ``now`` (aware UTC): ``drawn`` once drawn, ``closed`` once
    its list is frozen or its window has passed, ``open`` inside the window, else
    ``scheduled`` (issue 16 §1)."""
    now = now or utcnow()
    if ballot.drawn_at is not None:
        return DRAWN
    if ballot.frozen_at is not None or now >= ballot.closes_at:
        return CLOSED
    return OPEN if now >= ballot.opens_at else SCHEDULED


def day_slots(point: MarketPoint, day: date) -> list[Slot]:
    """The slots of ``point`` starting on local date ``day`` that the market has not
    closed, by start time."""
    start, end = local_day_bounds(day, point.timezone)
    return list(
        db.session.scalars(
            select(Slot)
            .where(
                Slot.market_point_id == point.id,
                Slot.starts_at >= start,
                Slot.starts_at < end,
                Slot.closed_at.is_(None),
            )
            .order_by(Slot.starts_at)
        )
    )


def ballot_slots(ballot: Ballot) -> list[Slot]:
    """The slots ``ballot`` is over (its point-day's open slots), by start time."""
    return day_slots(ballot.market_point, ballot.day)


def create_ballot(
    code: str,
    day: date,
    opens_at: datetime,
    closes_at: datetime,
    actor: Actor = CLI,
    now: datetime | None = None,
) -> Ballot:
    """Open a ballot for market point ``code`` on local date ``day`` (issue 16 §1).

    Args: opens_at, closes_at, the entry window, aware instants (stored UTC); actor, who
      (audited ``ballot.create``); now, aware UTC.
    Returns: the new Ballot (flushed), with its secret seed and published commitment;
      the day's slots now refuse first-come booking (``slot.ballot_id``).
    Locks: the point's row, then every slot row of the day in id order (the order of
      ``common.locking``): a booking racing with this either committed before the count
      of bookings here (then 409 ``slots_have_bookings``) or waits for these locks and
      then finds the slot held (409 ``ballot_running``).
    Raises: MarketPointNotFound (404); InvalidBallot (422: window reversed, longer than
      MAX_WINDOW_DAYS, closing in the past or after the day's first slot starts);
      BallotExists, NoSlotsForBallot, SlotsHaveBookings (409).
    """
    now = now or utcnow()
    point = get_point(code)
    if opens_at.tzinfo is None or closes_at.tzinfo is None:
        raise InvalidBallot(_l("Give the window's instants with their UTC offset."), fault="zone")
    if closes_at <= opens_at:
        raise InvalidBallot(_l("The window must close after it opens."), fault="order")
    if closes_at <= now:
        raise InvalidBallot(_l("The window must close in the future."), fault="past")
    if closes_at - opens_at > timedelta(days=MAX_WINDOW_DAYS):
        raise InvalidBallot(_l("The window may last at most 31 days."), fault="length")
    # Stored and answered in UTC whatever offset they came with (the API's GET shows
    # them so: the answer to the POST must not differ).
    opens_at, closes_at = opens_at.astimezone(UTC), closes_at.astimezone(UTC)
    lock_market_point(point)
    if db.session.scalar(
        select(Ballot.id).where(Ballot.market_point_id == point.id, Ballot.day == day)
    ):
        raise BallotExists()
    slots = day_slots(point, day)
    if not slots:
        raise NoSlotsForBallot()
    if closes_at > slots[0].starts_at:
        raise InvalidBallot(
            _l("The window must close before the day's first slot starts."), fault="too_late"
        )
    ids = sorted(slot.id for slot in slots)
    for slot_id in ids:
        lock_row(Slot, slot_id, Slot.booked_count)
    held = db.session.scalar(
        select(func.count(Booking.id)).where(
            Booking.slot_id.in_(ids), Booking.status.in_(ACTIVE_STATUSES)
        )
    ) + db.session.scalar(
        select(func.count(WaitingListEntry.id)).where(
            WaitingListEntry.slot_id.in_(ids), WaitingListEntry.status == "waiting"
        )
    )
    if held:
        raise SlotsHaveBookings()
    seed = secrets.token_hex(32)
    ballot = Ballot(
        market_point=point,
        day=day,
        opens_at=opens_at,
        closes_at=closes_at,
        places=sum(slot.capacity for slot in slots),
        algorithm=algorithm.ALGORITHM,
        seed=seed,
        commitment=algorithm.commitment(seed),
        created_at=now,
    )
    db.session.add(ballot)
    db.session.flush()
    db.session.execute(
        update(Slot)
        .where(Slot.id.in_(ids))
        .values(ballot_id=ballot.id)
        .execution_options(synchronize_session=False)
    )
    for slot in slots:
        db.session.expire(slot, ["ballot_id"])
    record(
        actor,
        "ballot.create",
        "ballot",
        ballot.id,
        {},
        {
            "day": day,
            "opens_at": opens_at,
            "closes_at": closes_at,
            "places": ballot.places,
            "commitment": ballot.commitment,
        },
        market_point_id=point.id,
        now=now,
    )
    return ballot


def get_ballot(ballot_id: object) -> Ballot:
    """Return ballot ``ballot_id``. Raises: BallotNotFound (404)."""
    ballot = db.session.get(Ballot, ballot_id) if valid_id(ballot_id) else None
    if ballot is None:
        raise BallotNotFound()
    return ballot


def find_ballots(code: str | None = None, day: date | None = None) -> list[Ballot]:
    """Ballots, newest day first, of market point ``code`` (any when None) on local
    date ``day`` (any when None); at most 200. An unknown code finds none."""
    stmt = select(Ballot).join(MarketPoint, Ballot.market_point_id == MarketPoint.id)
    if code:
        stmt = stmt.where(MarketPoint.code == code)
    if day is not None:
        stmt = stmt.where(Ballot.day == day)
    return list(db.session.scalars(stmt.order_by(Ballot.day.desc(), Ballot.id).limit(200)))


def point_ballots(point: MarketPoint, days: list[date]) -> dict[date, Ballot]:
    """The ballots of ``point`` on ``days`` (local dates), by day (one query)."""
    if not days:
        return {}
    rows = db.session.scalars(
        select(Ballot).where(Ballot.market_point_id == point.id, Ballot.day.in_(days))
    )
    return {ballot.day: ballot for ballot in rows}


def entry_count(ballot: Ballot) -> int:
    """How many entries ``ballot`` has (count)."""
    return db.session.scalar(
        select(func.count(BallotEntry.id)).where(BallotEntry.ballot_id == ballot.id)
    )


@dataclass(frozen=True)
class BallotView:
    """A ballot as the API and pages show it: status at the time asked, counts."""

    ballot: Ballot
    status: str
    entries: int


def view(ballot: Ballot, now: datetime | None = None) -> BallotView:
    """The ballot's BallotView at ``now`` (aware UTC)."""
    return BallotView(ballot, ballot_status(ballot, now), entry_count(ballot))

"""One entry's outcome, as its resident sees it (issue 16 §2): ``entered`` before the
draw; ``won`` with the booking code (by the draw, or later from a waiting list);
``waiting`` with the place in line on the best-placed of its preferences' lists;
``not_drawn`` when it holds neither."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ballots.models import ENTERED, NOT_DRAWN, WAITING, WON, BallotEntry
from extensions import db
from slots.models import PROMOTED, Booking, WaitingListEntry
from slots.waiting import waiting_position


@dataclass(frozen=True)
class Outcome:
    """``status`` (entered|won|waiting|not_drawn), the booking's code when won, the
    place in line (1 = next) and the slot id of that line when waiting."""

    status: str
    booking_code: str | None = None
    position: int | None = None
    slot_id: int | None = None


def entry_outcome(entry: BallotEntry) -> Outcome:
    """The outcome of ``entry`` now (reads its booking or its waiting places)."""
    if entry.status == ENTERED:
        return Outcome(ENTERED)
    if entry.status == WON and entry.booking_id is not None:
        return Outcome(WON, db.session.get(Booking, entry.booking_id).code)
    if entry.status == WAITING:
        places = list(
            db.session.scalars(
                select(WaitingListEntry).where(
                    WaitingListEntry.resident_id == entry.resident_id,
                    WaitingListEntry.slot_id.in_(entry.slot_ids),
                    WaitingListEntry.created_at >= entry.ballot.drawn_at,
                )
            )
        )
        for place in places:
            if place.status == PROMOTED and place.booking_id is not None:
                return Outcome(WON, db.session.get(Booking, place.booking_id).code)
        best = None
        for place in places:
            position = waiting_position(place)
            if position is not None and (best is None or position < best[0]):
                best = (position, place.slot_id)
        if best is not None:
            return Outcome(WAITING, position=best[0], slot_id=best[1])
    return Outcome(NOT_DRAWN)

"""The handout at the gate (issue 15): an admission hands over the booking's packages.

A booking reserved ``packages`` K of its point-day's stock when it was made
(``slots.stock``). When the gate admits it (an online scan, or an offline admission
merged later, both through ``checkin.scanning.check_in``) the packages are handed
over: the booking's ``handed_out_at`` becomes the admission instant and the stock
row's ``handed_out`` grows by K, in the admission's transaction. An undone check-in
gives them back. Both are conditional updates, so a replayed or repeated scan never
hands out twice, and the database's CHECK ``handed_out <= reserved`` backs the count.

This module is the one place of that rule; the scan answer carries what it returns as
``handout: {packages: K}`` (null when nothing is handed over).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from extensions import db
from slots.models import Booking, Stock
from slots.stock import slot_day

log = logging.getLogger("antri.handout")


def _stock_row(booking: Booking):
    """The WHERE clause naming the stock row ``booking`` draws on (its point-day)."""
    return (
        Stock.market_point_id == booking.slot.market_point_id,
        Stock.day == slot_day(booking.slot),
    )


def hand_out(booking: Booking, now: datetime) -> dict | None:
    """Hand over the packages ``booking`` reserved, at its admission.

    Call in the transaction that admitted ``booking`` (its slot and point loaded),
    after the admission won. Marks ``booking.handed_out_at`` = ``now`` unless it is
    already set (one handout per admission), then adds ``booking.packages`` to its
    point-day's ``stock.handed_out`` in one conditional update (never beyond
    ``reserved``).

    Args: booking, the booking just admitted; now, the admission instant (aware UTC;
      for an offline admission, when the device scanned it).
    Returns: ``{"packages": K}`` when K > 0 packages were handed over; None when the
      booking reserved none, was handed them already, or its point-day has no stock
      row that covers them (the person is admitted anyway; the gap is logged).
    Rule: issue 15 part 1, "Handing out".
    """
    packages = booking.packages or 0
    if packages <= 0:
        return None
    marked = db.session.execute(
        update(Booking)
        .where(Booking.id == booking.id, Booking.handed_out_at.is_(None))
        .values(handed_out_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if marked != 1:
        return None
    counted = db.session.execute(
        update(Stock)
        .where(*_stock_row(booking), Stock.handed_out + packages <= Stock.reserved)
        .values(handed_out=Stock.handed_out + packages)
        .execution_options(synchronize_session=False)
    ).rowcount
    if counted != 1:
        # A booking with packages always has a stock row that reserved them; if not,
        # the admission stands and nothing is marked handed out.
        log.warning("handout: no stock row covers booking %s's %d packages", booking.id, packages)
        db.session.execute(
            update(Booking)
            .where(Booking.id == booking.id)
            .values(handed_out_at=None)
            .execution_options(synchronize_session=False)
        )
        return None
    set_committed_value(booking, "handed_out_at", now)  # what the update wrote
    return {"packages": packages}


def give_back(booking: Booking) -> int:
    """Give back the packages handed over at an admission that is being undone.

    Call in the transaction that undoes ``booking``'s check-in. Clears
    ``handed_out_at`` (only if set, so a second undo gives nothing back twice) and takes
    ``booking.packages`` off its point-day's ``stock.handed_out``; the packages stay
    reserved for the booking, which may be admitted again.

    Returns: the packages given back (count; 0 when none had been handed over).
    Rule: issue 15 part 1, "An undone check-in gives them back".
    """
    packages = booking.packages or 0
    cleared = db.session.execute(
        update(Booking)
        .where(Booking.id == booking.id, Booking.handed_out_at.is_not(None))
        .values(handed_out_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if cleared != 1:
        return 0
    set_committed_value(booking, "handed_out_at", None)
    if packages <= 0:
        return 0
    db.session.execute(
        update(Stock)
        .where(*_stock_row(booking), Stock.handed_out >= packages)
        .values(handed_out=Stock.handed_out - packages)
        .execution_options(synchronize_session=False)
    )
    return packages


def replayed_handout(booking: Booking | None) -> dict | None:
    """What a replayed admission's answer says was handed over: ``{"packages": K}``
    while ``booking``'s packages are marked handed out, else None. Changes nothing."""
    if booking is None or (booking.packages or 0) <= 0 or booking.handed_out_at is None:
        return None
    return {"packages": booking.packages}

"""Stock per market point and local date (issue 15): the goods a point hands out.

A market operation hands out a fixed stock ("while stock lasts"). ``stock`` rows hold,
per point and local date, the packages on hand, how many one booking takes, how many
the day's active bookings reserved and how many the gate handed out. Stock is a hard
cap like capacity: every change of ``reserved`` is a conditional update of the stock
row (the database's CHECK constraints back it). A point-day without a row has no stock
limit and behaves as before issue 15.

This module is the one place of the stock rules: reading a point-day's level (here),
setting it, reserving and giving back packages, and the handout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from common.timeutil import local_date
from extensions import db
from slots.models import MarketPoint, Slot, Stock

# A point-day counts as nearly sold out (the supervisors' alert) from this share reserved.
ALERT_SHARE = 0.9


@dataclass(frozen=True)
class StockLevel:
    """One point-day's stock as plain values (counts of packages).

    ``reserved`` counts the packages of active bookings, handed-out ones included;
    ``left`` is ``packages - reserved``; ``per_booking`` is what one booking takes.
    """

    packages: int
    per_booking: int
    reserved: int
    handed_out: int

    @property
    def left(self) -> int:
        """Packages not reserved yet (count)."""
        return self.packages - self.reserved

    @property
    def sold_out(self) -> bool:
        """True when what is left cannot cover one more booking."""
        return self.left < self.per_booking

    @property
    def nearly_sold_out(self) -> bool:
        """True from ALERT_SHARE (90%) of the packages reserved (issue 15: the alert)."""
        return self.packages > 0 and self.reserved >= ALERT_SHARE * self.packages

    def as_json(self) -> dict:
        """``{packages, reserved, handed_out, left}``: the ``stock`` field of the
        occupancy answer (issue 15)."""
        return {
            "packages": self.packages,
            "reserved": self.reserved,
            "handed_out": self.handed_out,
            "left": self.left,
        }


def _level(row: Stock) -> StockLevel:
    return StockLevel(row.packages, row.per_booking, row.reserved, row.handed_out)


def slot_day(slot: Slot) -> date:
    """Return the local date (the market point's timezone) whose stock ``slot`` draws on:
    the date its start falls on there."""
    return local_date(slot.starts_at, slot.market_point.timezone)


def stock_level(point: MarketPoint, day: date) -> StockLevel | None:
    """Return point ``point``'s stock on local date ``day``, or None when none is set
    (no stock limit that day). Reads the committed row (no lock)."""
    row = db.session.scalar(
        select(Stock).where(Stock.market_point_id == point.id, Stock.day == day)
    )
    return None if row is None else _level(row)


def stock_levels(point_ids: list[int], day: date) -> dict[int, StockLevel]:
    """Return the stock of each point of ``point_ids`` on local date ``day`` that has a
    setting, keyed by market point id (one query; points without one are absent)."""
    if not point_ids:
        return {}
    rows = db.session.scalars(
        select(Stock).where(Stock.market_point_id.in_(point_ids), Stock.day == day)
    )
    return {row.market_point_id: _level(row) for row in rows}


def day_levels(point: MarketPoint, days: list[date]) -> dict[date, StockLevel]:
    """Return point ``point``'s stock on each of ``days`` that has a setting, keyed by
    local date (one query)."""
    if not days:
        return {}
    rows = db.session.scalars(
        select(Stock).where(Stock.market_point_id == point.id, Stock.day.in_(days))
    )
    return {row.day: _level(row) for row in rows}

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
from datetime import date, datetime

from sqlalchemy import Integer, bindparam, func, select, text, update

from common.audit import CLI, Actor, record
from common.locking import execute_locking, lock_row, locking_connection
from common.timeutil import local_date, local_day_bounds, utcnow
from extensions import db
from slots.errors import InvalidStock, SoldOut, StockBelowReserved, StockNotSet
from slots.locks import lock_market_point
from slots.models import ACTIVE_STATUSES, CHECKED_IN, CHECKED_OUT, Booking, MarketPoint, Slot, Stock
from slots.points import get_point

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


def sold_out_days(point: MarketPoint, days: list[date]) -> set[date]:
    """Return those of ``days`` (local dates) on which point ``point``'s stock cannot
    cover one more booking (one query). The ``sold_out`` flag of slot lists and the
    resident pages' "Habis" (issue 15); a day without a setting is never sold out."""
    return {day for day, level in day_levels(point, days).items() if level.sold_out}


def slot_sold_out(slot: Slot) -> bool:
    """True when ``slot``'s point-day stock cannot cover one more booking."""
    return slot_day(slot) in sold_out_days(slot.market_point, [slot_day(slot)])


# Writing stock ----------------------------------------------------------------------
#
# Every change of ``reserved`` is one conditional UPDATE of the point-day's row, taken
# after the slot's row lock (the lock order: slot -> stock -> resident). The setter
# locks every slot row of the day before it counts, so a booking either committed
# before the count or waits for the setter and then sees its row.

MAX_PACKAGES = 1_000_000  # packages on hand at one point on one day, at most
MAX_PER_BOOKING = 100  # packages one booking may take, at most

_STOCK_ROW = (Stock.market_point_id == bindparam("point_id"), Stock.day == bindparam("on_day"))

# The hard cap, as ``slots.places.HAS_ROOM`` is for places.
COVERS_ONE_MORE = Stock.reserved + Stock.per_booking <= Stock.packages

# One booking's reservation, and whether the point-day has a stock row at all (bound
# ``point_id``, ``on_day``): ``reserve_packages`` runs them, the one-statement booking's
# follow-up (``slots.booking``) embeds them in a statement of its own.
RESERVE = (
    update(Stock)
    .where(*_STOCK_ROW, COVERS_ONE_MORE)
    .values(reserved=Stock.reserved + Stock.per_booking)
    .returning(Stock.per_booking)
    .execution_options(synchronize_session=False)
)

IS_SET = select(Stock.id).where(*_STOCK_ROW)

# PostgreSQL: the reservation and, when it reserved nothing, whether a row is there at
# all, in one round trip (both read in the statement's snapshot, taken after the slot's
# lock was had, so a setter that committed meanwhile is seen).
_RESERVE_OR_TELL = text(
    """
    WITH reserved AS (
        UPDATE stock SET reserved = reserved + per_booking
        WHERE market_point_id = :point_id AND day = :on_day
          AND reserved + per_booking <= packages
        RETURNING per_booking
    )
    SELECT (SELECT per_booking FROM reserved) AS packages,
           EXISTS (SELECT FROM stock WHERE market_point_id = :point_id AND day = :on_day) AS is_set
    """
).columns(packages=Integer())

_GIVE_BACK = (
    update(Stock)
    .where(*_STOCK_ROW)
    .values(reserved=Stock.reserved - bindparam("count"))
    .execution_options(synchronize_session=False)
)


def reserve_packages(point_id: int, day: date) -> int:
    """Reserve one booking's packages of market point ``point_id``'s stock on local date
    ``day``, under the slot's row lock (taken by the caller: the lock order).

    Returns: the packages reserved (count: the day's ``per_booking``), or 0 when the
      point-day has no stock setting (no limit; nothing written).
    Raises: SoldOut (409) when what is left cannot cover one more booking (nothing
      written). Rule: issue 15, "a booking reserves K packages of its point-day in the
      same transaction as its place"; the hard cap is the WHERE of one update.
    """
    params = {"point_id": point_id, "on_day": day}
    conn = locking_connection()
    if conn.dialect.name == "postgresql":
        row = execute_locking("stock", _RESERVE_OR_TELL, params).one()
        if row.packages is not None:
            return row.packages
        if row.is_set:
            raise SoldOut()
        return 0
    packages = execute_locking("stock", RESERVE, params).scalar()
    if packages is not None:
        return packages
    if conn.execute(IS_SET, params).first() is not None:
        raise SoldOut()
    return 0


def give_back_packages(point_id: int, day: date, count: int) -> None:
    """Give ``count`` reserved packages back to point ``point_id``'s stock on ``day``
    (a cancelled, no-show, closed or moved booking's ``packages``); nothing when 0.
    Called after the slot's row lock (the lock order). Rule: issue 15."""
    if count > 0:
        execute_locking("stock", _GIVE_BACK, {"point_id": point_id, "on_day": day, "count": count})


def give_back_booking(booking: Booking, slot: Slot) -> None:
    """Give back what ``booking`` (just cancelled, no-show or moved away from ``slot``)
    reserved of ``slot``'s point-day. The booking keeps its ``packages`` as the record
    of what it held; only a move overwrites them (``move_packages``)."""
    give_back_packages(slot.market_point_id, slot_day(slot), booking.packages)


def covers_one_more(slot: Slot, freed: int = 0) -> bool:
    """True when ``slot``'s point-day stock could cover one more booking once ``freed``
    packages are given back (count), or has no setting. Reads the committed row: the
    caller holds the slot's lock, so a promotion's own reservation decides anyway."""
    level = stock_level(slot.market_point, slot_day(slot))
    return level is None or level.left + freed >= level.per_booking


def move_packages(booking: Booking, old: Slot, target: Slot) -> None:
    """Move ``booking``'s reservation from ``old``'s point-day to ``target``'s: nothing
    on the same day; otherwise both stock rows in date order (the lock order), the new
    day's ``per_booking`` reserved and the old packages given back, and
    ``booking.packages`` set to what it holds now. Both slots' locks are the caller's.
    Raises: SoldOut (409) when the new day cannot cover it. Rule: issue 15."""
    old_day, new_day = slot_day(old), slot_day(target)
    if old_day == new_day:
        return
    taken = 0
    for day in sorted((old_day, new_day)):
        if day == new_day:
            taken = reserve_packages(target.market_point_id, new_day)
        else:
            give_back_packages(old.market_point_id, old_day, booking.packages)
    db.session.execute(
        update(Booking)
        .where(Booking.id == booking.id)
        .values(packages=taken)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(booking, ["packages"])


def _check_numbers(packages: object, per_booking: object) -> tuple[int, int]:
    """The stock numbers as ints, or InvalidStock naming the faulty field."""

    def whole(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not whole(packages) or not 0 <= packages <= MAX_PACKAGES:
        raise InvalidStock(fields={"packages": str(InvalidStock.default_message)})
    if not whole(per_booking) or not 1 <= per_booking <= MAX_PER_BOOKING:
        raise InvalidStock(fields={"per_booking": str(InvalidStock.default_message)})
    return packages, per_booking


def _day_bookings(point: MarketPoint, day: date):
    """The condition on Booking of the point-day's active bookings."""
    start, end = local_day_bounds(day, point.timezone)
    in_day = select(Slot.id).where(
        Slot.market_point_id == point.id, Slot.starts_at >= start, Slot.starts_at < end
    )
    return Booking.slot_id.in_(in_day.scalar_subquery()), Booking.status.in_(ACTIVE_STATUSES)


def set_stock(
    code: str,
    day: date,
    packages: object,
    per_booking: object = 1,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> StockLevel:
    """Set market point ``code``'s stock on local date ``day``: ``packages`` on hand,
    ``per_booking`` taken by each booking (issue 15). Audited (``stock.set``).

    The first setting of a point-day that already has active bookings makes each of
    them reserve ``per_booking`` (``booking.packages``; those already admitted count as
    handed out). A later setting changes the numbers only: bookings keep the packages
    they reserved, new ones take the new ``per_booking``. Free places of the day's slots
    then go to their waiting lists while the stock covers them (issue 15).
    Locks: the point's row (no slot is made meanwhile), every slot row of the day in
    id order, then the stock row: a booking racing with the first setting either
    committed before the count here or waits for these locks and then sees the row.
    Args: code, a market point code (active or not); day, a local date; packages, an
      int 0..1000000; per_booking, an int 1..100; actor, who (default the CLI); now,
      aware UTC.
    Returns: the point-day's StockLevel after the change.
    Raises: InvalidStock (422), MarketPointNotFound (404), StockBelowReserved (409,
      with ``reserved``) when ``packages`` is below the packages already reserved.
    """
    packages, per_booking = _check_numbers(packages, per_booking)
    now = now or utcnow()
    actor = actor or CLI
    point = get_point(code)
    lock_market_point(point)
    start, end = local_day_bounds(day, point.timezone)
    slot_ids = db.session.scalars(
        select(Slot.id)
        .where(Slot.market_point_id == point.id, Slot.starts_at >= start, Slot.starts_at < end)
        .order_by(Slot.id)
    ).all()
    for slot_id in slot_ids:
        lock_row(Slot, slot_id, Slot.booked_count)
    params = {"point_id": point.id, "on_day": day}
    row = db.session.scalar(select(Stock).where(*_STOCK_ROW), params)
    before = None if row is None else _level(row)
    if row is None:
        day_bookings = _day_bookings(point, day)
        active = db.session.scalar(select(func.count(Booking.id)).where(*day_bookings))
        admitted = db.session.scalar(
            select(func.count(Booking.id)).where(
                *day_bookings, Booking.status.in_((CHECKED_IN, CHECKED_OUT))
            )
        )
        reserved = active * per_booking
        if reserved > packages:
            raise StockBelowReserved(StockBelowReserved.default_message, reserved=reserved)
        db.session.execute(
            update(Booking)
            .where(*day_bookings)
            .values(packages=per_booking)
            .execution_options(synchronize_session=False)
        )
        db.session.execute(
            update(Booking)
            .where(*day_bookings, Booking.status.in_((CHECKED_IN, CHECKED_OUT)))
            .values(handed_out_at=func.coalesce(Booking.checked_in_at, now))
            .execution_options(synchronize_session=False)
        )
        row = Stock(
            market_point_id=point.id,
            day=day,
            packages=packages,
            per_booking=per_booking,
            reserved=reserved,
            handed_out=admitted * per_booking,
            updated_at=now,
        )
        db.session.add(row)
        db.session.flush()
    else:
        changed = execute_locking(
            "stock",
            update(Stock)
            .where(Stock.id == row.id, Stock.reserved <= packages)
            .values(packages=packages, per_booking=per_booking, updated_at=now)
            .execution_options(synchronize_session=False),
            autoflush=True,
        )
        db.session.refresh(row)
        if changed.rowcount != 1:
            raise StockBelowReserved(StockBelowReserved.default_message, reserved=row.reserved)
    # Places free and packages to cover them: the day's waiting lists move up now,
    # as a raised capacity does (slot -> stock -> resident, the slots locked above).
    # Imported here: the waiting list reserves through this module.
    from slots.waiting import fill_from_waiting_list

    promoted = 0
    for slot_id in slot_ids:
        promoted += fill_from_waiting_list(db.session.get(Slot, slot_id), now)
    db.session.refresh(row)
    after = _level(row)
    record(
        actor,
        "stock.set",
        "stock",
        f"{point.code}/{day.isoformat()}",
        {} if before is None else {"packages": before.packages, "per_booking": before.per_booking},
        {
            "packages": packages,
            "per_booking": per_booking,
            "reserved": after.reserved,
            "promoted_from_waiting_list": promoted,
        },
        point.id,
        now,
    )
    return after


def get_stock(code: str, day: date) -> tuple[MarketPoint, StockLevel]:
    """Return market point ``code`` (active or not) and its stock on local ``day``.

    Raises: MarketPointNotFound (404); StockNotSet (404) when the point-day has no
      setting (no stock limit that day)."""
    point = get_point(code)
    level = stock_level(point, day)
    if level is None:
        raise StockNotSet()
    return point, level

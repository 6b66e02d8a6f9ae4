"""The row locks of slots' rows, each taken through ``common.locking`` (its module
docstring gives the order: market point, booking, slot, resident, household).

Services call these; none writes a lock of its own.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from common.locking import execute_locking, lock_row
from common.timeutil import utcnow
from extensions import db
from slots.models import CONFIRMED, Booking, Household, MarketPoint, Resident, Slot


def lock_market_point(point: MarketPoint) -> None:
    """Take ``point``'s row lock (a no-op write; on SQLite, the write lock) for the rest
    of the transaction. Serialises what must be decided one at a time per point:
    admissions against the safe limit (two gates cannot both admit the last place)
    and the making of slots (two generations would each check for overlaps before the
    other's slots exist). Raises: as ``common.locking.lock_row``."""
    lock_row(MarketPoint, point.id, MarketPoint.safe_limit)


_LOCK_BOOKING = (
    update(Booking)
    .where(Booking.id == bindparam("booking_id"), Booking.status == CONFIRMED)
    .values(status=Booking.status)
    .returning(Booking.slot_id)
    .execution_options(synchronize_session=False)
)


def lock_confirmed_booking(booking_id: int) -> int | None:
    """Take the row lock of booking ``booking_id`` if it is confirmed, and return the
    slot it is in now (a move or cancel committed meanwhile is seen); None when it is
    not confirmed (nothing locked). Raises: as ``common.locking.lock_row``."""
    params = {"booking_id": booking_id}
    return execute_locking("booking", _LOCK_BOOKING, params, autoflush=True).scalar()


def lock_slot(slot: Slot) -> None:
    """Take the slot's row lock (a no-op write) so its count and waiting list cannot
    change under us; on SQLite, as every first write, the database write lock.
    Raises: as ``common.locking.lock_row``."""
    lock_row(Slot, slot.id, Slot.booked_count)
    db.session.expire(slot, ["booked_count"])


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


def lock_household(kk_hash: str, now: datetime) -> None:
    """Take the family card's row lock (created on first use): after the resident's
    (the lock order: ``common.locking``)."""
    stmt = _household_upsert(db.session.get_bind().dialect.name)
    execute_locking("household", stmt, {"kk_hash": kk_hash, "created_at": now}, autoflush=True)


def lock_resident(nik_hash: str, last4: str) -> int:
    """Create or touch the resident row of ``nik_hash`` and return its id.

    The upsert takes the resident's row lock (on SQLite, writes hold the database
    lock already), so a second booking by the same NIK waits here until the first has
    committed and then sees it. The lock order: ``common.locking``.
    """
    params = {"nik_hash": nik_hash, "nik_last4": last4, "created_at": utcnow()}
    stmt = _resident_upsert(db.session.get_bind().dialect.name)
    return execute_locking("resident", stmt, params).scalar_one()

"""Row locks: one order, only inside a transaction, with a short wait.

Every row lock Antri takes goes through this module (the rows' own wrappers are in
``slots.locks``). A lock is a write to the row (a no-op UPDATE of one column, or the
upsert of a lock row), so it lasts until the transaction ends, works the same through
PgBouncer's transaction pooling (no session advisory locks), and on SQLite is the
database write lock, which serialises every writer anyway.

The lock order (DESIGN.md: "lock several rows in a fixed order"), first to last:

1. ``market_point``: admissions against the safe limit (``checkin``) and the making of
   slots (``slots.schedules``) are decided one at a time per point;
2. ``booking``: a cancel, a move or a scan of one booking decides once (a conditional
   update of its status, ``slots.status.transition``, or ``slots.locks.lock_booking``);
3. ``slot``: the count of booked places and the waiting list (``slots.locks.lock_slot``,
   and every place taken, ``slots.places.take_place``); two slots in id order (a move);
4. ``resident``: one NIK's bookings (the resident row's upsert);
5. ``household``: one family card's bookings (the household row's upsert).

Two paths take locks against that order and rely on the database noticing: closing a
slot (slot, then each of its bookings) and promotions from a waiting list (residents in
line order, not by key). A deadlock there is detected by PostgreSQL, and the request is
run again (``common.db.run_with_retry``) or answered "busy".

Waits are short: on PostgreSQL each transaction that takes a lock first sets
``lock_timeout`` to LOCK_TIMEOUT_MS (``SET LOCAL``: it ends with the transaction), so a
lock held too long by another transaction ends this one with an OperationalError
(SQLSTATE 55P03), which the app answers as 503 ``busy`` with Retry-After, as it does a
deadlock. On SQLite the connection's busy timeout (30 s) plays that part.
"""

from __future__ import annotations

import weakref
from functools import cache
from typing import Any

from flask import current_app
from sqlalchemy import Connection, bindparam, text, update
from sqlalchemy.engine import Result

from extensions import db

# The order above, by table name; ``rank`` tells where a table stands in it.
LOCK_ORDER = ("market_point", "booking", "slot", "resident", "household")

_SET_LOCK_TIMEOUT = text("SELECT set_config('lock_timeout', :timeout, true)")

# The root transactions of sessions whose lock_timeout is set (a weak set: a finished
# transaction drops out by itself).
_timed: weakref.WeakSet[Any] = weakref.WeakSet()


def rank(table: str) -> int:
    """Return ``table``'s place in LOCK_ORDER (0 first). Raises ValueError for a table
    that is not a lock of the order."""
    return LOCK_ORDER.index(table)


def locking_connection() -> Connection:
    """Return the session's connection, ready for taking row locks: inside a
    transaction (the session's, begun if none is open yet), and on PostgreSQL with
    ``lock_timeout`` set to LOCK_TIMEOUT_MS for the rest of it (once per transaction).

    Raises: RuntimeError when the connection is not in a transaction or runs in
      autocommit: a lock there would end with its statement and protect nothing.
    """
    session = db.session()
    connection = session.connection()  # begins the session's transaction if needed
    autocommit = connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    if not connection.in_transaction() or autocommit:
        raise RuntimeError("row locks need a transaction; this connection has none")
    transaction = session.get_transaction()
    if connection.dialect.name == "postgresql" and transaction not in _timed:
        timeout = f"{current_app.config['LOCK_TIMEOUT_MS']}ms"
        connection.execute(_SET_LOCK_TIMEOUT, {"timeout": timeout})
        _timed.add(transaction)
    return connection


def lock_row(model: Any, row_id: int, column: Any) -> None:
    """Take the row lock of ``model``'s row ``row_id`` for the rest of the transaction.

    Args: model, a mapped class whose table is in LOCK_ORDER; row_id, its primary key;
      column, a non-key column of it, written with its own value (a no-op update: a
      key column would take a stronger lock that also blocks inserts referring to the
      row).
    Raises: RuntimeError outside a transaction; OperationalError when the lock is not
      had within LOCK_TIMEOUT_MS (PostgreSQL) or on a deadlock.
    """
    rank(model.__tablename__)
    locking_connection()
    # Through the session, so that changes pending in it are flushed first.
    db.session.execute(_no_op_update(model, column.key), {"row_id": row_id})


@cache
def _no_op_update(model: Any, key: str) -> Any:
    """``UPDATE <model> SET <key> = <key> WHERE id = :row_id``, built once per model and
    column (building statements costs CPU on a rush)."""
    column = getattr(model, key)
    return (
        update(model)
        .where(model.id == bindparam("row_id"))
        .values({key: column})
        .execution_options(synchronize_session=False)
    )


def execute_locking(
    table: str, statement: Any, params: Any = None, autoflush: bool = False
) -> Result:
    """Run ``statement``, a write that locks rows of ``table`` (a conditional update or
    the upsert of a lock row), on the locking connection; return its result.

    Args: autoflush, True to run it through the session, which first flushes the
      changes pending in it (False: straight on the connection, as the booking path
      does to spare the ORM's work).
    Raises: as ``lock_row``.
    """
    rank(table)
    connection = locking_connection()
    if autoflush:
        return db.session.execute(statement, params)
    return connection.execute(statement, params)

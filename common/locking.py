"""Row locks: one order, only inside a transaction, with a short wait.

Every row lock Antri takes goes through this module (the rows' own wrappers are in
``slots.locks``). A lock is a write to the row (a no-op UPDATE of one column, or the
upsert of a lock row), so it lasts until the transaction ends, works the same through
PgBouncer's transaction pooling (no session advisory locks), and on SQLite is the
database write lock, which serialises every writer anyway.

The lock order (DESIGN.md: "lock several rows in a fixed order"), first to last:

a. ``conversation``: one phone's conversation on one channel (issue 17,
   ``channels.conversation``), taken before anything its message does (a booking);
b. ``ballot``: a ballot's freeze and draw, one at a time (a row lock; issue 16). The
   freeze then takes ``LOCK TABLE ballot_entry IN SHARE MODE`` (PostgreSQL): it waits
   for every entry under way to commit, and an entry after it sees the frozen list
   (``ballots.draw.freeze``); entries take no row lock of the ballot;
1. ``market_point``: admissions against the safe limit (``checkin``) and the making of
   slots (``slots.schedules``) are decided one at a time per point;
2. ``booking``: a cancel, a move or a scan of one booking decides once (a conditional
   update of its status, ``slots.status.transition``, or ``slots.locks.lock_booking``);
3. ``slot``: the count of booked places and the waiting list (``slots.locks.lock_slot``,
   and every place taken, ``slots.places.take_place``); two slots in id order (a move);
4. ``stock``: one point-day's packages (issue 15), reserved after the place is taken
   and given back after the place is freed (``slots.stock``); two days in date order
   (a move between days);
5. ``resident``: one NIK's bookings (the resident row's upsert);
6. ``household``: one family card's bookings (the household row's upsert).

Two paths take locks against that order and rely on the database noticing: closing a
slot (slot, then each of its bookings) and promotions from a waiting list (residents in
line order, not by key). A deadlock there is detected by PostgreSQL, and the request is
run again (``common.db.run_with_retry``) or answered "busy".

Waits are short, for every lock wait on PostgreSQL, not only the locks taken here (a
plain ORM flush that meets a locked row, DDL, a TRUNCATE): each connection starts with
``lock_timeout`` set to LOCK_TIMEOUT_MS as a startup option (``init_app``: libpq's
``options="-c lock_timeout=<ms>"``, no statement and no round trip per request). A lock
held too long by another transaction ends the waiting statement with an
OperationalError (SQLSTATE 55P03, psycopg's LockNotAvailable), which the app answers as
503 ``busy`` with Retry-After, as it does a deadlock. PgBouncer in transaction mode does
not pass startup options: there, set it on the role (``ALTER ROLE antri SET
lock_timeout = '5s'``). On SQLite the connection's busy timeout (30 s) plays that part.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Flask
from sqlalchemy import Connection, bindparam, event, update
from sqlalchemy.engine import Result
from sqlalchemy.exc import DisconnectionError

from extensions import db

# The order above, by table name; ``rank`` tells where a table stands in it.
LOCK_ORDER = (
    "conversation",
    "ballot",
    "market_point",
    "booking",
    "slot",
    "stock",
    "resident",
    "household",
)

# Where a connection's record keeps the LOCK_TIMEOUT_MS it was started with.
_STARTED_WITH = "antri_lock_timeout_ms"


def init_app(app: Flask) -> None:
    """Bound every lock wait of ``app``'s PostgreSQL connections by LOCK_TIMEOUT_MS.

    Each new connection gets ``-c lock_timeout=<LOCK_TIMEOUT_MS>ms`` added to its libpq
    ``options`` (a startup option: PostgreSQL applies it for the whole session, at no
    cost per request), read from ``app.config`` when the connection is made. A pooled
    connection started with another value (the setting was changed while the app ran,
    as tests do) is dropped at checkout and made again with the current one.

    Args: app, an app whose Flask-SQLAlchemy engine is bound (after ``db.init_app``).
    Returns: nothing; SQLite engines are left as they are (their busy timeout bounds
      waits). Rule: DESIGN.md, "lock several rows in a fixed order" with short waits;
      README, configuration, LOCK_TIMEOUT_MS.
    """
    with app.app_context():
        engine = db.engine
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "do_connect")
    def _start_with_lock_timeout(_dialect, record, _cargs, cparams) -> None:
        milliseconds = int(app.config["LOCK_TIMEOUT_MS"])
        option = f"-c lock_timeout={milliseconds}ms"
        cparams["options"] = f"{cparams['options']} {option}" if cparams.get("options") else option
        record.info[_STARTED_WITH] = milliseconds

    @event.listens_for(engine, "checkout")
    def _drop_if_started_otherwise(_dbapi_connection, record, _proxy) -> None:
        if record.info.get(_STARTED_WITH) != int(app.config["LOCK_TIMEOUT_MS"]):
            raise DisconnectionError("LOCK_TIMEOUT_MS changed: reconnect with the new one")


def rank(table: str) -> int:
    """Return ``table``'s place in LOCK_ORDER (0 first). Raises ValueError for a table
    that is not a lock of the order."""
    return LOCK_ORDER.index(table)


def locking_connection() -> Connection:
    """Return the session's connection, ready for taking row locks: inside a
    transaction (the session's, begun if none is open yet). Its waits are bounded by
    the connection's own ``lock_timeout`` (``init_app``); nothing is set here.

    Raises: RuntimeError when the connection is not in a transaction or runs in
      autocommit: a lock there would end with its statement and protect nothing.
    """
    session = db.session()
    connection = session.connection()  # begins the session's transaction if needed
    autocommit = connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    if not connection.in_transaction() or autocommit:
        raise RuntimeError("row locks need a transaction; this connection has none")
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
    table: str,
    statement: Any,
    params: Any = None,
    autoflush: bool = False,
    populate_existing: bool = False,
) -> Result:
    """Run ``statement``, a write that locks rows of ``table`` (a conditional update or
    the upsert of a lock row), on the locking connection; return its result.

    Args: autoflush, True to run it through the session, which first flushes the
      changes pending in it (False: straight on the connection, as the booking path
      does to spare the ORM's work); populate_existing, with autoflush, for a
      statement returning ORM objects: objects of those rows already in the session
      take the values the statement returned (what the lock now protects).
    Raises: as ``lock_row``.
    """
    rank(table)
    connection = locking_connection()
    if autoflush:
        options = {"populate_existing": True} if populate_existing else None
        return db.session.execute(statement, params, execution_options=options)
    return connection.execute(statement, params)

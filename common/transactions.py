"""Ending a request's transaction so that PostgreSQL keeps its prepared statements.

psycopg prepares a statement on the server once a connection has run it five times,
and discards every prepared statement of the connection whenever it rolls back (an
object they use might have been rolled back with the transaction). A request that
ends in a ROLLBACK, as a refused booking or a page that only read does by default,
so costs the next requests on that connection a fresh parse and plan: about 1 ms of
PostgreSQL's CPU for the booking statement, measured on the booking rush benchmark.
A transaction that wrote nothing ends the same either way, so it ends with COMMIT.
"""

from __future__ import annotations

from sqlalchemy import text

from common import events
from extensions import db

_WROTE = text("SELECT txid_current_if_assigned() IS NOT NULL")


def end_transaction() -> None:
    """End the session's open transaction: COMMIT when it wrote nothing, else ROLLBACK.

    Only PostgreSQL is asked (``txid_current_if_assigned()`` is NULL until a
    transaction writes); on SQLite, or with ORM changes not yet flushed, it rolls back.
    Live events and notices noted for after the commit are dropped first: nothing they
    tell of was written. Returns None; raises what the database raises.
    """
    session = db.session()  # the request's Session (the scoped proxy lacks in_transaction)
    if not session.in_transaction():
        return
    if session.new or session.dirty or session.deleted:
        session.rollback()
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql" or connection.execute(_WROTE).scalar():
        session.rollback()
        return
    session.info.pop(events.KEY, None)
    session.info.pop("new_notices", None)
    session.commit()


def end_request_transaction(exc: BaseException | None) -> None:
    """``teardown_request``: end a request's transaction that its view left open (a page
    that only read), by ``end_transaction``; after an unhandled error, leave it to the
    session's removal, which rolls back. Never raises: the response has gone out."""
    if exc is not None:
        return
    try:
        end_transaction()
    except Exception:  # the session's removal rolls back whatever is left
        db.session.rollback()

"""The one commit of a request, a CLI command or a job, and how a transaction ends.

Views, commands and services do not commit (STYLE.md, "one commit"; issue 13). One
wrapper does, when the work is done:

- a request: ``run_view`` (called by ``app.Antri.dispatch_request`` around every view)
  commits when the view returned a response under 400; after an exception or an error
  status it ends the transaction by ``end_transaction``, which keeps nothing written;
- a CLI command or an RQ job: ``one_transaction`` (a decorator; ``common.cli.CommandGroup``
  puts it on every command of a group, ``jobs.in_app_context`` on every job) commits when
  the function returned and rolls back when it raised.

All of them commit through ``commit``, which runs the after-commit work: each hook
registered with ``add_after_commit`` (e.g. ``jobs.hand_on_notices``, the relay kick) is
asked, just before the commit, for the work to run once the commit succeeded. In a
request that work runs after the response has gone out; elsewhere at once. A rollback
drops it. Live events follow the same rule by their own listener (``common.events``).

A use case that must commit in steps (the timed job: each step its own transaction) or
act on a committed row before it returns (the relay job enqueues what it committed)
calls ``commit`` itself; the wrapper's commit then finds nothing left to do.

Ending without COMMIT costs PostgreSQL: psycopg prepares a statement on the server once
a connection has run it five times, and discards every prepared statement of the
connection whenever it rolls back. A request that ends in a ROLLBACK (a refused booking)
so costs the next requests on that connection a fresh parse and plan: about 1 ms of
PostgreSQL's CPU for the booking statement, measured on the booking rush benchmark. A
transaction that wrote nothing ends the same either way, so ``end_transaction`` ends it
with COMMIT.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, after_this_request, current_app, has_request_context
from sqlalchemy import Connection, event, text
from sqlalchemy.orm import Session

from common import events
from extensions import db

log = logging.getLogger("antri.transactions")

_WROTE = text("SELECT txid_current_if_assigned() IS NOT NULL")

# app.extensions key of the hooks registered with ``add_after_commit``.
AFTER_COMMIT = "antri_after_commit"
# session.info key under which services note the notices they wrote (slots.service);
# the notices' hook takes them at the commit, a rollback drops them.
NEW_NOTICES = "new_notices"

Work = Callable[[], None]
# Called with the session just before a commit; returns the work to run after it.
AfterCommitHook = Callable[[Session], Work | None]
F = TypeVar("F", bound=Callable[..., Any])


def add_after_commit(app: Flask, hook: AfterCommitHook) -> None:
    """Register ``hook`` for every commit made by ``commit`` in ``app``.

    Args: hook(session) is called just before the commit; it takes from the session
      what it needs (e.g. pops the ids it noted in ``session.info``) and returns a
      callable to run once the commit has succeeded, or None for nothing to do.
      The callable runs after the response in a request, at once elsewhere; it must
      not raise (an exception is logged: the change is committed whatever it does).
    Returns None. Common code so calls feature code without importing it.
    """
    app.extensions.setdefault(AFTER_COMMIT, []).append(hook)


def commit() -> None:
    """Commit the session's transaction, then run (or schedule) the after-commit work.

    Returns None. Raises what the database raises on COMMIT (then nothing is committed
    and no after-commit work runs).
    """
    session = db.session()
    hooks: list[AfterCommitHook] = current_app.extensions.get(AFTER_COMMIT, [])
    work = [item for item in (hook(session) for hook in hooks) if item is not None]
    session.commit()
    for item in work:
        _after_commit(item)


def _after_commit(work: Work) -> None:
    """Run ``work`` after the response has gone out in a request, else now."""
    if has_request_context():

        @after_this_request
        def _later(response):
            response.call_on_close(functools.partial(_quietly, work))
            return response

    else:
        _quietly(work)


def _quietly(work: Work) -> None:
    try:
        work()
    except Exception:  # the change is committed; the work is best effort (see hooks)
        log.exception("after-commit work failed")


def end_transaction() -> None:
    """End the session's open transaction keeping nothing it wrote: COMMIT when it wrote
    nothing (the prepared statements stay), else ROLLBACK.

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
    session.info.pop(NEW_NOTICES, None)
    session.commit()


def single_statement_connection() -> Connection | None:
    """The session's connection in autocommit, for work whose whole write is one
    statement: PostgreSQL commits a statement sent outside BEGIN by itself, which saves
    the BEGIN and COMMIT round trips (about 0.2 ms of CPU per request between the server
    and PostgreSQL, on ``bench/ballot_entry.py``).

    Returns: the connection, or None when the session's transaction has begun already
      (what it did must commit with the statement) or the database is not PostgreSQL.
    The session's transaction then holds no BEGIN: ``commit`` and ``end_transaction``
    end it as any other, without a round trip. ``leave_single_statement`` ends it early
    when more statements must follow in one transaction. Row locks cannot be taken on
    it (``common.locking.locking_connection`` refuses): they would end with their
    statement.
    """
    session = db.session()
    if session.in_transaction() or session.get_bind().dialect.name != "postgresql":
        return None
    return session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def leave_single_statement() -> None:
    """End the transaction begun by ``single_statement_connection`` (each statement on it
    has committed by itself: there is nothing left to commit), so that the statements
    that follow share one transaction again, on a connection in the usual mode."""
    db.session().commit()


def abandon() -> None:
    """End the transaction after a failure, keeping nothing (``end_transaction``); when
    even that fails (a lost connection, a failed flush) roll back. Never raises."""
    try:
        end_transaction()
    except Exception:  # the connection may be gone: a plain rollback is all that is left
        try:
            db.session.rollback()
        except Exception:  # the session's removal discards what is left
            log.exception("rolling back failed")


def run_view(dispatch: Callable[[], Any], make_response: Callable[[Any], Any]) -> Any:
    """Run a request's view in one transaction (``app.Antri.dispatch_request``).

    Args: dispatch, the view call returning what a view returns; make_response, the
      app's, to read the status. Returns the response. A status under 400 commits
      (``commit``: the after-commit work runs after the response); 400 and up ends the
      transaction by ``end_transaction`` (a refusal keeps nothing it wrote). An exception
      does the same, then propagates to the error handlers, as does an exception of the
      COMMIT itself (a conflict, a busy database), so it still gets its 409 or 503.
    A streamed body runs after this: it gets no transaction from the view.
    """
    try:
        response = make_response(dispatch())
    except BaseException:
        abandon()
        raise
    if response.status_code < 400:
        commit()
    else:
        end_transaction()
    return response


def one_transaction(func: F) -> F:
    """Decorate a CLI command or a job: ``commit`` once when ``func`` returns, roll back
    when it raises (then re-raise). Needs an app context when called."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except BaseException:
            abandon()
            raise
        commit()
        return result

    return run  # type: ignore[return-value]


def end_request_transaction(exc: BaseException | None) -> None:
    """``teardown_request``: end what an error handler or an ``after_request`` hook left
    open after ``run_view`` (an error page reads the signed-in user), by
    ``end_transaction``; after an unhandled error, leave it to the session's removal,
    which rolls back. Never raises: the response has gone out."""
    if exc is not None:
        return
    try:
        end_transaction()
    except Exception:  # the session's removal rolls back whatever is left
        db.session.rollback()


def _drop_after_rollback(session: Session, previous: Any) -> None:
    """Forget the notices noted by work that was rolled back (not a savepoint's
    rollback, which leaves the outer transaction's work in place): nothing is handed
    on for rows that do not exist."""
    if not getattr(previous, "nested", False):
        session.info.pop(NEW_NOTICES, None)


def _drop_after_commit(session: Session) -> None:
    """Forget the notices noted by a transaction committed without ``commit`` (a plain
    ``session.commit()``): they belong to it, not to the next one. Its rows wait for
    the relay, as they did before the one commit."""
    session.info.pop(NEW_NOTICES, None)


event.listen(Session, "after_soft_rollback", _drop_after_rollback)
event.listen(Session, "after_commit", _drop_after_commit)

"""Transaction helpers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from extensions import db

T = TypeVar("T")

# psycopg turns a query's ``%(name)s`` placeholders into ``$n`` and keeps the result
# only for a query of at most this many characters (its MAX_CACHED_STATEMENT_LENGTH):
# a longer one is parsed again on every execution, 150 us for the entry statement.
PSYCOPG_CACHED_QUERY_LENGTH = 4096

# PostgreSQL's SQLSTATEs for "this transaction lost a race; run it again".
_RETRYABLE = {"40P01", "40001"}  # deadlock_detected, serialization_failure


def compact_sql(sql: str) -> str:
    """``sql`` with every run of whitespace outside string literals made one space, so
    that a long statement written readably stays under PSYCOPG_CACHED_QUERY_LENGTH.

    Args: sql, SQL text whose only quoting is standard string literals ('...', with ''
      inside): no comments, quoted identifiers, dollar quotes or backslash escapes,
      whose bounds this does not parse. Literals are kept as they are.
    Returns: the compacted text.
    Raises: ValueError when ``sql`` holds ``--``, ``/*``, ``"``, ``$`` or a backslash.
    """
    for mark in ("--", "/*", '"', "$", "\\"):
        if mark in sql:
            raise ValueError(f"compact_sql: cannot fold SQL holding {mark!r}")
    parts = sql.split("'")  # even parts lie outside literals ('' escapes split evenly)
    for index in range(0, len(parts), 2):
        parts[index] = re.sub(r"\s+", " ", parts[index])
    return "'".join(parts).strip()


def is_retryable(error: OperationalError) -> bool:
    """True when ``error`` is a deadlock or serialization failure that a retry fixes."""
    return getattr(error.orig, "sqlstate", None) in _RETRYABLE


def run_with_retry(action: Callable[[], T], attempts: int = 3) -> T:
    """Run ``action`` (a transaction's work; the one commit may follow, outside it:
    deadlocks are met by statements), again after a rollback
    when the database aborts it as a deadlock victim, up to ``attempts`` times.

    Returns: what ``action`` returns. Raises: its exceptions, and the last
    OperationalError when every attempt lost.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except OperationalError as error:
            db.session.rollback()
            if not is_retryable(error) or attempt == attempts:
                raise
            time.sleep(0.005 * attempt)  # let the winner commit first
    raise AssertionError("unreachable")

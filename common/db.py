"""Transaction helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from extensions import db

T = TypeVar("T")

# PostgreSQL's SQLSTATEs for "this transaction lost a race; run it again".
_RETRYABLE = {"40P01", "40001"}  # deadlock_detected, serialization_failure


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

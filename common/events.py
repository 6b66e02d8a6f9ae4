"""Events that happen in a transaction and are told to others only after it commits.

A service builds an event with ``live_event`` (the one shape of an event) and calls
``record(event)`` while it works; the event waits in the session's ``info`` under
``"live_events"``. One SQLAlchemy ``after_commit`` listener hands the
waiting events to the app's publisher (``app.extensions["antri_publisher"]``, set by
``checkin.live.init_app``); a rollback drops them. So nobody hears of a check-in that
did not happen, and nobody hears of one before it is in the database.

This module knows nothing of Redis or of the check-in feature: ``slots`` and
``checkin`` both record events here without importing each other (DESIGN.md,
dependency direction).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from extensions import db

log = logging.getLogger("antri.events")

KEY = "live_events"
PUBLISHER = "antri_publisher"

Publisher = Callable[[list[dict[str, Any]]], None]


def live_event(
    kind: str, point_id: int, market_point: str, at: datetime, **fields: Any
) -> dict[str, Any]:
    """Build one live-feed event: the shape every page and stream reads.

    Args: kind, what changed (``booking``, ``cancellation``, ``no_show``,
      ``waiting_list``, ``slot_closed``, or a scan's ``check_in``, ``check_out``,
      ``wait``, ``refused``, ``undo``); point_id, the market point's id; market_point,
      its code; at, aware UTC, when it happened; fields, more JSON-safe values of the
      kind (``slot_id``, ``booking_id``, ``action``, ``inside_now``, ...), never a
      name, phone or NIK.
    Returns: {kind, point_id, market_point, **fields, at (ISO 8601)}; the publisher
      adds ``id`` (``checkin.live``).
    """
    return {
        "kind": kind,
        "point_id": point_id,
        "market_point": market_point,
        **fields,
        "at": at.isoformat(),
    }


def record(payload: dict[str, Any]) -> None:
    """Queue ``payload`` (a JSON-safe dict) to be published after this transaction commits.

    Args: payload, e.g. ``{"kind": "check_in", "point_id": 3, ...}``.
    Returns: None; the event is dropped if the transaction rolls back.
    """
    db.session.info.setdefault(KEY, []).append(payload)


def _after_commit(session: Session) -> None:
    """Publish the committed transaction's events; never raises (the work is done)."""
    events = session.info.pop(KEY, None)
    if not events or not has_app_context():
        return
    publisher: Publisher | None = current_app.extensions.get(PUBLISHER)
    if publisher is None:
        return
    try:
        publisher(events)
    except Exception:  # a publisher bug must not turn a committed request into a 500
        log.exception("publishing %d live events failed", len(events))


def _after_rollback(session: Session, previous: Any) -> None:
    """Forget the events of work that was rolled back (not for a savepoint's rollback,
    which leaves the outer transaction's work in place)."""
    if not getattr(previous, "nested", False):
        session.info.pop(KEY, None)


# Every session (the request's scoped session and any other) follows the same rule.
event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_soft_rollback", _after_rollback)

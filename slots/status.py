"""Moving a booking or waiting-list entry from one status to the next.

Statuses only move forward (DESIGN.md); each move is one conditional update, so two
transactions racing for the same row decide once, not twice.
"""

from __future__ import annotations

from sqlalchemy import (
    update,
)

from common.locking import locking_connection
from extensions import db


def transition(model, row_id: int, from_status: str, to_status: str, **values) -> bool:
    """Move one row of ``model`` (Booking or WaitingListEntry) from ``from_status`` to
    ``to_status`` with a conditional update, setting ``values`` too.

    Returns: True when this call moved it; False when it was not in ``from_status``
    (another transaction decided first). Statuses only move forward (DESIGN.md).
    """
    locking_connection()  # the update waits for the row's lock: inside a transaction, timed
    moved = db.session.execute(
        update(model)
        .where(model.id == row_id, model.status == from_status)
        .values(status=to_status, **values)
        .execution_options(synchronize_session=False)
    )
    return moved.rowcount == 1

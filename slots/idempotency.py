"""Idempotency keys: one request's effect per client key (issue 3), for every kind of
request that takes an ``Idempotency-Key`` (a booking; a ballot entry, issue 16).

The first request claims the key with a conditional insert (a concurrent twin waits on
the unique key, then finds it claimed); it records what it made once it made it, in
the same transaction, so a failed request leaves no key behind and may be retried.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from extensions import db
from slots.errors import IdempotencyKeyReused, InvalidIdempotencyKey
from slots.models import IdempotencyKey

_KEY = re.compile(r"[\x21-\x7e]{1,200}")


def claim_key(
    key: str, fingerprint: str, now: datetime
) -> tuple[int | None, IdempotencyKey | None]:
    """Claim idempotency ``key`` for the request with ``fingerprint``.

    Args: key, the client's header (1 to 200 printable ASCII characters); fingerprint,
      ``slots.codes.request_fingerprint`` of the request; now, aware UTC.
    Returns: (claimed id, None) for a new key: the caller does the work, then
      ``record_result``; (None, the earlier row) for a repeat of the same request.
    Raises: InvalidIdempotencyKey (422) for a malformed key; IdempotencyKeyReused
      (422) for the same key with another request.
    """
    if not _KEY.fullmatch(key or ""):
        raise InvalidIdempotencyKey()
    make = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # The first write claims the key; a concurrent twin waits here, then finds it.
    claimed = db.session.execute(
        make(IdempotencyKey)
        .values(key=key, request_hash=fingerprint, created_at=now)
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.key])
        .returning(IdempotencyKey.id)
    ).scalar_one_or_none()
    if claimed is not None:
        return claimed, None
    previous = db.session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key))
    if previous.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    return None, previous


def record_result(claimed: int, **made: int) -> None:
    """Record on the claimed key what its request made (``booking_id=`` or
    ``ballot_entry_id=``), in the request's transaction."""
    db.session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claimed)
        .values(**made)
        .execution_options(synchronize_session=False)
    )

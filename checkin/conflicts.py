"""Gate conflicts: offline admissions the server would have refused, for supervisors.

``checkin.offline`` records one when a merged offline admission is refused; the
supervisor pages list them and mark them dealt with; the overview counts the open
ones among its alerts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from accounts.models import ADMIN, SUPERVISOR, User
from checkin.models import GateConflict, Scan
from common import audit
from common.errors import Forbidden, NotFound
from common.timeutil import utcnow
from extensions import db
from slots.models import Booking, MarketPoint


def record_conflict(
    point: MarketPoint, scan: Scan, booking: Booking | None, kind: str, now: datetime
) -> None:
    """Record a gate conflict at ``point``: the logged ``scan`` (refused on merge) of
    ``booking`` (None when unknown), ``kind`` the server's refusal reason, detected at
    ``now`` (aware UTC). Added to the session, flushed with the merge."""
    db.session.add(
        GateConflict(
            detected_at=now,
            market_point_id=point.id,
            scan_id=scan.id,
            booking_id=booking.id if booking else None,
            kind=kind,
        )
    )


def open_visit(
    booking: Booking, point: MarketPoint, since: datetime, now: datetime
) -> GateConflict | None:
    """The earliest conflicting offline admission of ``booking`` at ``point`` whose
    person has not left: admitted after ``since`` (aware UTC; now minus the dwell
    time, when the visit ends anyway) and by ``now``, no ``left_at`` yet. None when
    there is none. A check-out scan of that ticket closes it (issue 14 item 4)."""
    return db.session.scalar(
        select(GateConflict)
        .join(Scan, GateConflict.scan_id == Scan.id)
        .where(
            GateConflict.booking_id == booking.id,
            GateConflict.market_point_id == point.id,
            GateConflict.left_at.is_(None),
            Scan.scanned_at > since,
            Scan.scanned_at <= now,
        )
        .order_by(Scan.scanned_at, GateConflict.id)
        .limit(1)
    )


def conflicts(point: MarketPoint, since: datetime) -> list[GateConflict]:
    """Return ``point``'s gate conflicts detected since ``since`` (aware UTC), newest first."""
    return list(
        db.session.scalars(
            select(GateConflict)
            .where(GateConflict.market_point_id == point.id, GateConflict.detected_at >= since)
            .order_by(GateConflict.detected_at.desc(), GateConflict.id.desc())
        )
    )


def unresolved_before(point: MarketPoint, before: datetime) -> list[GateConflict]:
    """Return ``point``'s conflicts detected before ``before`` and still unresolved."""
    return list(
        db.session.scalars(
            select(GateConflict)
            .where(
                GateConflict.market_point_id == point.id,
                GateConflict.detected_at < before,
                GateConflict.resolved_at.is_(None),
            )
            .order_by(GateConflict.detected_at.desc())
        )
    )


def open_conflicts(point_ids: list[int]) -> dict[int, int]:
    """Return {market point id: gate conflicts no supervisor has resolved yet}."""
    rows = db.session.execute(
        select(GateConflict.market_point_id, func.count(GateConflict.id))
        .where(GateConflict.market_point_id.in_(point_ids), GateConflict.resolved_at.is_(None))
        .group_by(GateConflict.market_point_id)
    )
    counts = dict.fromkeys(point_ids, 0)
    counts.update(dict(rows.all()))
    return counts


def resolve_conflict(conflict_id: int, user: User, now: datetime | None = None) -> GateConflict:
    """Mark a gate conflict as dealt with by ``user`` (a supervisor or admin).

    Raises: Forbidden for staff; NotFound (404 ``conflict_not_found``) for an unknown id.
    Resolving twice keeps the first resolution.
    """
    if user.role not in (SUPERVISOR, ADMIN):
        raise Forbidden()
    conflict = db.session.get(GateConflict, conflict_id) if 0 < conflict_id < 2**31 else None
    if conflict is None:
        raise NotFound(code="conflict_not_found")
    if conflict.resolved_at is None:
        conflict.resolved_at = now or utcnow()
        conflict.resolved_by_id = user.id
        audit.record(
            audit.Actor.of(user),
            "conflict.resolve",
            "gate_conflict",
            conflict.id,
            {"kind": conflict.kind, "resolved_at": None},
            {"resolved_at": conflict.resolved_at},
            conflict.market_point_id,
            conflict.resolved_at,
        )
        db.session.flush()
    return conflict

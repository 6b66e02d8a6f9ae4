"""The scan log: one row per scan at a gate, admitted or not. Append-only.

Also the gate conflicts: scans a device admitted while offline that the server,
merging them later, found it should have refused (a ticket cancelled after the
device's last sync, or admitted first at another gate).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import User
from common.timeutil import UTCDateTime
from extensions import db
from slots.models import Booking, MarketPoint

ADMITTED = "admitted"
REFUSED = "refused"
WAIT = "wait"
# A supervisor's undo of a check-in made in error (the booking is confirmed again).
UNDONE = "undone"


class Scan(db.Model):
    """A scan: when, where, by whom, with what device, and what the gate answered.

    ``booking_id`` is empty when the scanned text matched no booking (a forged or
    unknown ticket); ``reason`` is the refusal code, empty when accepted. Direction
    ``in`` is a check-in (admitted, wait or refused), ``out`` a check-out (admitted
    means the check-out was accepted); ``undone`` marks a supervisor's undo of a
    check-in. ``nonce`` is the client's id of the scan (the server makes one when the
    client sends none): a resend with the same user, device and nonce is answered from
    this row and changes nothing. ``synced_at`` is when an offline scan reached the
    server (``scanned_at`` is when the device scanned it); empty for online scans.
    """

    __tablename__ = "scan"
    __table_args__ = (
        CheckConstraint("direction IN ('in','out')", name="direction_known"),
        CheckConstraint("result IN ('admitted','refused','wait','undone')", name="result_known"),
        # NOT NULL and unique: a repeated nonce is a no-op (STYLE.md, "Scans are an
        # append-only log"); a NULL would slip past the constraint.
        UniqueConstraint("user_id", "device", "nonce", name="uq_scan_user_device_nonce"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    direction: Mapped[str] = mapped_column(String(3), default="in")
    market_point_id: Mapped[int] = mapped_column(ForeignKey("market_point.id"), index=True)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("booking.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    device: Mapped[str] = mapped_column(String(100), default="")
    input_kind: Mapped[str] = mapped_column(String(8))  # "ticket" or "code"
    result: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(32), default="")
    nonce: Mapped[str] = mapped_column(String(64))
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The booking's proxy collected, not the resident (issue 15 part 3): set on the
    # admission of a booking that had a proxy named.
    by_proxy: Mapped[bool] = mapped_column(default=False, server_default=false())

    booking: Mapped[Booking | None] = relationship()
    user: Mapped[User] = relationship()
    market_point: Mapped[MarketPoint] = relationship()


class GateConflict(db.Model):
    """An offline admission the server would have refused, for a supervisor to see.

    ``kind`` is the server's refusal reason at merge time (``cancelled``, ``no_show``,
    ``already_checked_in``, ``too_late``, ...); ``scan`` is the logged offline scan
    (its ``scanned_at`` is when the device admitted the person, its ``synced_at`` when
    the server heard of it); ``detected_at`` is when the merge found the conflict.
    ``resolved_at``/``resolved_by`` are set when a supervisor marks it dealt with.

    The person the device admitted is inside all the same (issue 14 item 4): from the
    scan's ``scanned_at`` until ``left_at`` (a check-out scan of the same ticket at
    the point, ``checkin.scanning.check_out``) or DWELL_MINUTES, whichever comes
    first, exactly like a checked-in booking (``checkin.occupancy.inside_now``).
    Resolving the conflict does not end the visit: the person is still there.
    """

    __tablename__ = "gate_conflict"

    id: Mapped[int] = mapped_column(primary_key=True)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    market_point_id: Mapped[int] = mapped_column(ForeignKey("market_point.id"), index=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scan.id"), unique=True)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("booking.id"))
    kind: Mapped[str] = mapped_column(String(32))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    scan: Mapped[Scan] = relationship()
    booking: Mapped[Booking | None] = relationship()
    market_point: Mapped[MarketPoint] = relationship()
    resolved_by: Mapped[User | None] = relationship()

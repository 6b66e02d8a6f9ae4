"""The scan log: one row per scan at a gate, admitted or not. Append-only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import User
from common.timeutil import UTCDateTime
from extensions import db
from slots.models import Booking, MarketPoint

ADMITTED = "admitted"
REFUSED = "refused"
WAIT = "wait"


class Scan(db.Model):
    """A scan: when, where, by whom, with what device, and what the gate answered.

    ``booking_id`` is empty when the scanned text matched no booking (a forged or
    unknown ticket); ``reason`` is the refusal code, empty when accepted. Direction
    ``in`` is a check-in (admitted, wait or refused), ``out`` a check-out (admitted
    means the check-out was accepted).
    """

    __tablename__ = "scan"
    __table_args__ = (
        CheckConstraint("direction IN ('in','out')", name="direction_known"),
        CheckConstraint("result IN ('admitted','refused','wait')", name="result_known"),
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

    booking: Mapped[Booking | None] = relationship()
    user: Mapped[User] = relationship()
    market_point: Mapped[MarketPoint] = relationship()

"""A ballot round of one market point's local date and the residents' entries in it
(issue 16). Written only through ``ballots.rounds``, ``ballots.entering`` and
``ballots.draw``."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.timeutil import UTCDateTime, utcnow
from extensions import db
from slots.models import MarketPoint

# The public statuses of a ballot (issue 16 §1). Only ``frozen_at`` and ``drawn_at`` are
# stored; scheduled and open follow from the clock (``ballots.rounds.ballot_status``).
SCHEDULED = "scheduled"
OPEN = "open"
CLOSED = "closed"
DRAWN = "drawn"

# Entry statuses (issue 16 §2): entered until the draw; then won (a booking), waiting (on
# the waiting lists of its preferences) or not_drawn (no place and no waiting list: the
# per-NIK limit refused it at the draw, or its waiting places ended).
ENTERED = "entered"
WON = "won"
WAITING = "waiting"
NOT_DRAWN = "not_drawn"


class Ballot(db.Model):
    """A ballot over the slots of ``market_point`` on local date ``day``.

    ``seed`` is the draw's secret (64 hex characters), never shown before the draw;
    ``commitment`` its SHA-256, published at creation. ``list_hash`` is set when the
    entry list is frozen (``frozen_at``), ``proof`` (JSON) when it is drawn.
    Instants are aware UTC.
    """

    __tablename__ = "ballot"
    __table_args__ = (
        CheckConstraint("closes_at > opens_at", name="closes_after_opening"),
        CheckConstraint("places >= 0", name="places_not_negative"),
        UniqueConstraint("market_point_id", "day", name="uq_ballot_point_day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    market_point_id: Mapped[int] = mapped_column(ForeignKey("market_point.id"))
    day: Mapped[date]
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # Places of the day's slots when the ballot was made (a count; the draw uses the
    # places left at the draw, which the proof publishes).
    places: Mapped[int]
    algorithm: Mapped[str] = mapped_column(String(32))
    seed: Mapped[str] = mapped_column(String(64))
    commitment: Mapped[str] = mapped_column(String(64))
    list_hash: Mapped[str | None] = mapped_column(String(64))
    frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    drawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    proof: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    market_point: Mapped[MarketPoint] = relationship()

    def __repr__(self) -> str:
        return f"<Ballot {self.id} {self.market_point_id} {self.day}>"


class BallotEntry(db.Model):
    """One resident's entry: who (as a booking keeps it: name, NIK hash through the
    resident row, last four digits, phone, language, family card hash), the slots they
    prefer in order (``preferences``: slot ids joined by commas, one to three), whether
    they are aged 60 or more on the ballot's date (``elderly``, from the NIK), and the
    outcome. UNIQUE (ballot, resident) and (ballot, kk_hash) hold one entry per NIK and,
    where the point limits households, per family card."""

    __tablename__ = "ballot_entry"
    __table_args__ = (
        CheckConstraint("status IN ('entered','won','waiting','not_drawn')", name="status_known"),
        UniqueConstraint("ballot_id", "resident_id", name="uq_ballot_entry_resident"),
        # NULLs are distinct: only points with a household limit keep kk_hash.
        Index("uq_ballot_entry_household", "ballot_id", "kk_hash", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballot.id"))
    code: Mapped[str] = mapped_column(String(16), unique=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("resident.id"))
    name: Mapped[str] = mapped_column(String(120))
    nik_last4: Mapped[str] = mapped_column(String(4))
    phone: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(8), default="id")
    kk_hash: Mapped[str | None] = mapped_column(String(64))
    preferences: Mapped[str] = mapped_column(String(40))
    elderly: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=ENTERED)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("booking.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    ballot: Mapped[Ballot] = relationship()

    @property
    def slot_ids(self) -> list[int]:
        """The preferred slot ids, first choice first."""
        return [int(part) for part in self.preferences.split(",") if part]

    def __repr__(self) -> str:
        return f"<BallotEntry {self.code} {self.status}>"

"""Market points, slots, residents and bookings.

The database keeps the capacity promise: ``slot.booked_count`` counts the slot's
active bookings and a CHECK constraint holds it between 0 and ``capacity``; bookings
change it only through conditional updates in ``slots.places``.
"""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.timeutil import UTCDateTime, utcnow
from extensions import db

# Booking statuses (DESIGN.md): confirmed -> checked_in -> checked_out,
# confirmed -> cancelled, confirmed -> no_show.
CONFIRMED = "confirmed"
CHECKED_IN = "checked_in"
CHECKED_OUT = "checked_out"
CANCELLED = "cancelled"
NO_SHOW = "no_show"
BOOKING_STATUSES = (CONFIRMED, CHECKED_IN, CHECKED_OUT, CANCELLED, NO_SHOW)
# Statuses that hold a place in the slot and count towards the per-NIK limit.
ACTIVE_STATUSES = (CONFIRMED, CHECKED_IN, CHECKED_OUT)
# The channels a booking comes through (issue 17, ``Booking.channel``): the web pages
# and API, the staff's assisted desk, and the phone channels of ``channels/``.
WEB = "web"
# "ballot": given by a ballot's draw (issue 16), whichever way the entry came.
BOOKING_CHANNELS = (WEB, "assisted", "sms", "ussd", "whatsapp", "ballot")


class MarketPoint(db.Model):
    """A place where goods are handed out, with a safe occupancy limit (people inside)."""

    __tablename__ = "market_point"
    __table_args__ = (CheckConstraint("safe_limit > 0", name="safe_limit_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300), default="")
    kecamatan: Mapped[str] = mapped_column(String(100), default="")
    kecamatan_code: Mapped[str] = mapped_column(String(6), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    safe_limit: Mapped[int]
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Jakarta")
    opens_at: Mapped[time | None]
    closes_at: Mapped[time | None]
    active: Mapped[bool] = mapped_column(default=True)
    # The point limits bookings per household (KK number) as well as per NIK.
    household_limit: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    source_id: Mapped[int | None] = mapped_column(
        doc="Market id in the InfoPangan Jakarta master data, where it came from there."
    )

    slots: Mapped[list[Slot]] = relationship(back_populates="market_point")

    def __repr__(self) -> str:
        return f"<MarketPoint {self.code} {self.name!r}>"


class Slot(db.Model):
    """A time window ``[starts_at, ends_at)`` at one market point with a booking capacity.

    Instants are aware UTC; ``booked_count`` is the number of active bookings.
    """

    __tablename__ = "slot"
    __table_args__ = (
        CheckConstraint("capacity >= 0", name="capacity_not_negative"),
        CheckConstraint("booked_count >= 0", name="booked_not_negative"),
        CheckConstraint("booked_count <= capacity", name="booked_within_capacity"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        UniqueConstraint("market_point_id", "starts_at", name="uq_slot_point_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    market_point_id: Mapped[int] = mapped_column(ForeignKey("market_point.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    capacity: Mapped[int]
    booked_count: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Closed by the market: no booking, hidden from residents, its bookings cancelled.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedule.id"), index=True)
    # The ballot that holds the slot until its draw (issue 16): no first-come booking or
    # waiting-list join while set. An id without a foreign key: slots know no ballots.
    ballot_id: Mapped[int | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    market_point: Mapped[MarketPoint] = relationship(back_populates="slots")

    @property
    def remaining(self) -> int:
        """Places left (count), never negative."""
        return max(self.capacity - self.booked_count, 0)

    def __repr__(self) -> str:
        return f"<Slot {self.id} {self.starts_at:%Y-%m-%d %H:%M}Z cap={self.capacity}>"


class Schedule(db.Model):
    """A template of slots at one market point: on ``weekdays`` (ISO numbers 1=Monday
    .. 7=Sunday, as a string such as "12345"), back-to-back slots of ``slot_minutes``
    from ``start_time`` to ``end_time`` local time with ``capacity`` places each, from
    ``valid_from`` to ``valid_until`` (local dates, inclusive).

    Slots made from it are published (visible and bookable) at ``publish_time`` local
    time ``publish_days_before`` days before their own date: the rush starts at a
    moment everyone knows (issue 8).
    """

    __tablename__ = "schedule"
    __table_args__ = (
        CheckConstraint("slot_minutes > 0", name="slot_minutes_positive"),
        CheckConstraint("capacity >= 0", name="capacity_not_negative"),
        CheckConstraint("end_time > start_time", name="ends_after_start"),
        CheckConstraint("publish_days_before >= 0", name="publish_days_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    market_point_id: Mapped[int] = mapped_column(ForeignKey("market_point.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    weekdays: Mapped[str] = mapped_column(String(7))
    start_time: Mapped[time]
    end_time: Mapped[time]
    slot_minutes: Mapped[int]
    capacity: Mapped[int]
    valid_from: Mapped[date]
    valid_until: Mapped[date]
    publish_days_before: Mapped[int] = mapped_column(default=1)
    publish_time: Mapped[time]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    market_point: Mapped[MarketPoint] = relationship()


class Resident(db.Model):
    """A person known only by a keyed hash of their NIK.

    The row exists so concurrent bookings by one NIK can be serialised: every booking
    transaction first bumps ``lock_version``, which takes the row's write lock.
    """

    __tablename__ = "resident"

    id: Mapped[int] = mapped_column(primary_key=True)
    nik_hash: Mapped[str] = mapped_column(String(64), unique=True)
    nik_last4: Mapped[str] = mapped_column(String(4))
    lock_version: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Household(db.Model):
    """A family card (KK) known only by a keyed hash of its number. Like ``Resident``,
    the row exists to serialise bookings: at points with ``household_limit``, every
    booking bumps ``lock_version`` (after the resident's lock) before counting."""

    __tablename__ = "household"

    id: Mapped[int] = mapped_column(primary_key=True)
    kk_hash: Mapped[str] = mapped_column(String(64), unique=True)
    lock_version: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def _slot_start(context) -> datetime:
    """The default ``booking.arrive_at``: the start of the booking's slot (no wave)."""
    slot_id = context.get_current_parameters()["slot_id"]
    return context.connection.execute(select(Slot.starts_at).where(Slot.id == slot_id)).scalar()


class Booking(db.Model):
    """One resident's reservation of one slot; ``code`` is the random booking code."""

    __tablename__ = "booking"
    __table_args__ = (
        CheckConstraint(
            "status IN ('confirmed','checked_in','checked_out','cancelled','no_show')",
            name="status_known",
        ),
        # One active booking per resident and slot, whatever the per-NIK limit is.
        Index(
            "uq_booking_active_resident_slot",
            "slot_id",
            "resident_id",
            unique=True,
            sqlite_where=text("status IN ('confirmed','checked_in','checked_out')"),
            postgresql_where=text("status IN ('confirmed','checked_in','checked_out')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("slot.id"), index=True)
    # NULL once the personal data is purged (RETENTION_DAYS after the slot).
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("resident.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    nik_last4: Mapped[str] = mapped_column(String(4))
    phone: Mapped[str] = mapped_column(String(20))
    # The language the resident used: their messages are written in it.
    language: Mapped[str] = mapped_column(String(8), default="id", server_default="id")
    # The family card's keyed hash, at points that limit bookings per household.
    kk_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=CONFIRMED)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checked_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Packages of its point-day's stock this booking reserved (issue 15): 0 where the
    # point-day has no stock setting. Kept per booking, so a release gives back exactly
    # what was taken even after the per-booking amount changed.
    packages: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # When the gate handed the packages over (the admission); NULL again after an undo.
    handed_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the resident is told to come (issue 15): the start of the booking's arrival
    # wave (``slots.waves``); the slot's start with waves off. The default serves rows
    # written without one (fixtures, tools): the slot's start.
    arrive_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_slot_start)
    # How the resident reached Antri (issue 17): one of BOOKING_CHANNELS.
    channel: Mapped[str] = mapped_column(String(16), default=WEB, server_default=WEB)

    slot: Mapped[Slot] = relationship()
    resident: Mapped[Resident] = relationship()

    def __repr__(self) -> str:
        return f"<Booking {self.code} {self.status}>"


class Stock(db.Model):
    """The goods a market point hands out on one local date (issue 15).

    ``packages`` are on hand; each booking reserves ``per_booking`` of them.
    ``reserved`` counts the packages of the day's active bookings (handed-out ones
    included) and ``handed_out`` those the gate handed over. Stock is a hard cap, kept by
    the database as capacity is: CHECK constraints hold ``0 <= handed_out <= reserved <=
    packages``, and ``reserved`` changes only through conditional updates in
    ``slots.stock``. A point-day without a row has no stock limit.
    """

    __tablename__ = "stock"
    __table_args__ = (
        CheckConstraint("packages >= 0", name="packages_not_negative"),
        CheckConstraint("per_booking >= 1", name="per_booking_positive"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= packages", name="reserved_within_packages"),
        CheckConstraint("handed_out >= 0", name="handed_out_not_negative"),
        CheckConstraint("handed_out <= reserved", name="handed_out_within_reserved"),
        UniqueConstraint("market_point_id", "day", name="uq_stock_point_day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    market_point_id: Mapped[int] = mapped_column(ForeignKey("market_point.id"))
    # The market point's local date (its timezone) of the slots this stock serves.
    day: Mapped[date]
    packages: Mapped[int]
    per_booking: Mapped[int] = mapped_column(default=1, server_default=text("1"))
    reserved: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    handed_out: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    market_point: Mapped[MarketPoint] = relationship()

    @property
    def left(self) -> int:
        """Packages not reserved yet (count): ``packages - reserved``."""
        return self.packages - self.reserved

    def __repr__(self) -> str:
        return f"<Stock {self.market_point_id} {self.day} {self.reserved}/{self.packages}>"


class BookingProxy(db.Model):
    """The one person a resident names to collect a booking for them (issue 15 part 3).

    The proxy's NIK is kept as a resident's is (DESIGN.md privacy): a keyed hash for
    the per-day limit and the last four digits to show. ``day`` is the local date of the
    booking's slot, the date PROXY_LIMIT_PER_DAY counts on. A removed proxy keeps its
    row with ``removed_at`` set until it is named again or the booking is purged, so the
    resident's message can say who was removed; only rows without ``removed_at`` count
    and show. Written only through ``slots.proxy``.
    """

    __tablename__ = "booking_proxy"
    __table_args__ = (Index("ix_booking_proxy_nik_day", "nik_hash", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("booking.id"), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    nik_hash: Mapped[str] = mapped_column(String(64))
    nik_last4: Mapped[str] = mapped_column(String(4))
    day: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    booking: Mapped[Booking | None] = relationship()

    def __repr__(self) -> str:
        return f"<BookingProxy {self.booking_id} ****{self.nik_last4} {self.day}>"


# Waiting-list entry statuses: waiting -> promoted (got a booking), left (resident
# left the list), skipped (over the per-NIK limit when their turn came), expired
# (the slot ended first).
WAITING = "waiting"
PROMOTED = "promoted"
LEFT = "left"
SKIPPED = "skipped"
EXPIRED = "expired"


class WaitingListEntry(db.Model):
    """A resident waiting for a place in a full slot; first in, first promoted."""

    __tablename__ = "waiting_list_entry"
    __table_args__ = (
        CheckConstraint(
            "status IN ('waiting','promoted','left','skipped','expired')", name="status_known"
        ),
        # One place in the line per resident and slot.
        Index(
            "uq_waiting_list_entry_resident_slot",
            "slot_id",
            "resident_id",
            unique=True,
            sqlite_where=text("status = 'waiting'"),
            postgresql_where=text("status = 'waiting'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("slot.id"), index=True)
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("resident.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    nik_last4: Mapped[str] = mapped_column(String(4))
    phone: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(8), default="id", server_default="id")
    kk_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=WAITING)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("booking.id"))

    slot: Mapped[Slot] = relationship()
    booking: Mapped[Booking | None] = relationship()


class IdempotencyKey(db.Model):
    """A client's ``Idempotency-Key`` and the booking its first request made.

    ``request_hash`` is a SHA-256 of the canonical request body, so a repeat with the
    same key but another body is recognised and refused.
    """

    __tablename__ = "idempotency_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("booking.id"))
    # The ballot entry its first request made (issue 16), for keys sent with an entry.
    ballot_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ballot_entry.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    booking: Mapped[Booking | None] = relationship()


# Notice statuses: pending (owed; sent once due_at has passed) -> sending (claimed by
# one worker until lease_until) -> sent | failed (the channel refused, or the last retry
# failed); void: no longer owed (a reminder for a booking cancelled first).
NOTICE_PENDING = "pending"
NOTICE_SENDING = "sending"
NOTICE_SENT = "sent"
NOTICE_FAILED = "failed"
NOTICE_VOID = "void"
# Message kinds about a booking, one per booking at most (uq_notice_booking_kind).
NOTICE_KINDS = (
    "confirmation",
    "reminder",
    "cancellation",
    "promotion",
    "slot_closed",
    "slot_moved",
    "proxy_set",
    "proxy_removed",
)


class Notice(db.Model):
    """An outbox row: a message owed to a resident about a booking, or a direct one.

    Written in the same transaction as the change it tells about; UNIQUE
    (booking_id, kind) makes one message per booking per kind, whatever number of
    workers, schedulers or retries handle it. ``attempts`` counts claims: a claim
    after the first may follow a worker that died mid-send, so channels make a repeat
    of the same notice harmless (see ``notify.channels``).

    A direct notice (``booking_id`` NULL; ``notify.outbox.queue_message``) carries its
    own recipient, language and text, rendered when written, and a unique ``ref`` that
    makes it once only (a ballot entry's message, a reply to an SMS; issues 16, 17).
    ``via`` names the channel the message asks for ("" = NOTIFY_CHANNEL).
    """

    __tablename__ = "notice"
    __table_args__ = (
        UniqueConstraint("booking_id", "kind", name="uq_notice_booking_kind"),
        CheckConstraint(
            "status IN ('pending','sending','sent','failed','void')", name="status_known"
        ),
        CheckConstraint(
            "booking_id IS NOT NULL OR (to_phone IS NOT NULL AND body IS NOT NULL)",
            name="about_someone",
        ),
        Index("ix_notice_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("booking.id"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=NOTICE_PENDING)
    # A direct notice's own recipient (E.164), language ("id"/"en") and text; its
    # ``ref`` makes it once only (a repeat of the same ref writes nothing).
    to_phone: Mapped[str | None] = mapped_column(String(20))
    language: Mapped[str | None] = mapped_column(String(8))
    body: Mapped[str | None] = mapped_column(Text)
    ref: Mapped[str | None] = mapped_column(String(80), unique=True)
    # The channel this message asks for ("" = NOTIFY_CHANNEL; "whatsapp", issue 17).
    via: Mapped[str] = mapped_column(String(16), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Not sent before this instant (UTC): the reminder's time, or a retry's back-off.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # The claim of the worker sending it; a later claim may take over once it passed.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the relay last handed it to RQ (so the relay does not flood the queue).
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    channel: Mapped[str] = mapped_column(String(16), default="", server_default="")
    last_error: Mapped[str] = mapped_column(String(300), default="", server_default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    booking: Mapped[Booking | None] = relationship()

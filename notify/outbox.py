"""The outbox of messages to residents: the rows, written with the change they tell of.

A notice row (``slots.models.Notice``) is written in the transaction of the change it
tells about, so a message exists exactly when its change does (the transactional
outbox, issue 7); ``notify.relay`` delivers it after the commit. UNIQUE (booking_id,
kind) makes one message per booking per kind. Reminders are owed by the clock, so
they are written when they fall due (``write_due_reminders``). Operators see and
retry failed notices here (``failed_notices``, ``outbox_counts``, ``retry_now``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import joinedload

from common import transactions
from common.audit import CLI, Actor, record
from common.timeutil import utcnow
from extensions import db
from slots.models import (
    CONFIRMED,
    NOTICE_FAILED,
    NOTICE_PENDING,
    NOTICE_SENDING,
    NOTICE_SENT,
    NOTICE_VOID,
    Booking,
    Notice,
    Slot,
)

# The key of ``db.session.info`` under which a transaction keeps the notices it queued,
# for ``notify.relay.hand_on_notices`` to hand on after the commit.
QUEUED_KEY = transactions.NEW_NOTICES


@dataclass(frozen=True)
class QueuedNotice:
    """A notice written in this transaction, for ``notify.relay.hand_on_notices`` to hand
    on after the commit: its id and due instant (aware UTC)."""

    id: int
    due_at: datetime


_INSERT_NOTICES = insert(Notice).returning(Notice.id, Notice.due_at)


def _notice_values(booking_id: int, kind: str, now: datetime, via: str = "") -> dict:
    return {
        "booking_id": booking_id,
        "kind": kind,
        "status": NOTICE_PENDING,
        "created_at": now,
        "due_at": now,
        "via": via,
    }


# Booking channels whose messages go back the way the resident came (issue 17): a
# booking made on WhatsApp is told on WhatsApp; every other one through NOTIFY_CHANNEL.
_REPLY_CHANNELS = {"whatsapp": "whatsapp"}


def via_for(channel: str) -> str:
    """Return the ``Notice.via`` of a message about a booking made through ``channel``
    (``Booking.channel``): "whatsapp" for WhatsApp, "" (NOTIFY_CHANNEL) otherwise."""
    return _REPLY_CHANNELS.get(channel, "")


# The same rule as SQL, for notices written in bulk (``write_due_reminders``).
VIA_OF_BOOKING = case(
    *((Booking.channel == name, via) for name, via in _REPLY_CHANNELS.items()), else_=""
)


def queue_notice(
    booking: Booking, kind: str, now: datetime | None = None, due_at: datetime | None = None
) -> None:
    """Add the outbox row for message ``kind`` about ``booking`` (once per kind).

    Args: kind, one of ``NOTICE_KINDS``; now, aware UTC; due_at, aware UTC, the
      earliest instant to send it (default now).
    The row commits with the change it tells about (it is flushed with it), so a
    message exists exactly when its change does (the transactional outbox, issue 7);
    ``notify.relay.hand_on_notices`` hands it on after the commit.
    """
    now = now or utcnow()
    notice = Notice(
        booking=booking,
        kind=kind,
        created_at=now,
        due_at=due_at or now,
        via=via_for(booking.channel or ""),
    )
    db.session.add(notice)
    db.session.info.setdefault(QUEUED_KEY, []).append(notice)


def queue_message(
    to: str,
    text: str,
    *,
    kind: str,
    ref: str,
    language: str = "id",
    via: str = "",
    now: datetime | None = None,
) -> bool:
    """Add a direct outbox row: ``text`` to phone ``to``, about no booking (a ballot
    entry's message, a reply to an SMS; issues 16 and 17).

    Args: to, an E.164 phone number; text, the whole message, already in the
      resident's language (rendered now: nothing about it changes later); kind, a
      short name for operators ("ballot_entry", "reply", ...; at most 32 characters);
      ref, at most 80 characters, unique among all notices: a second call with the
      same ref writes nothing, also when two transactions race (INSERT ... ON CONFLICT
      DO NOTHING), so a resent inbound message is answered once; language, "id" or
      "en"; via, the channel to send it through ("" = NOTIFY_CHANNEL; see
      ``notify.channels.channel_named``); now, aware UTC (default the clock).
    Returns: True if the row was written, False if ``ref`` was taken already.
    Like ``queue_notice`` the row commits with the caller's transaction and is handed
    on after the commit.
    """
    now = now or utcnow()
    values = {
        "booking_id": None,
        "kind": kind,
        "status": NOTICE_PENDING,
        "created_at": now,
        "due_at": now,
        "to_phone": to,
        "language": language,
        "body": text,
        "ref": ref,
        "via": via,
    }
    dialect = db.session.get_bind().dialect.name
    make_insert = pg_insert if dialect == "postgresql" else sqlite_insert
    written = db.session.execute(
        make_insert(Notice)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Notice.ref])
        .returning(Notice.id, Notice.due_at)
    ).all()
    note_queued([tuple(row) for row in written])
    return bool(written)


def void_reminder(booking_id: int) -> None:
    """Drop the pending reminder of a booking that no longer needs one (cancelled, no
    show, closed): it is marked ``void``, never sent."""
    db.session.execute(
        update(Notice)
        .where(
            Notice.booking_id == booking_id,
            Notice.kind == "reminder",
            Notice.status == NOTICE_PENDING,
        )
        .values(status=NOTICE_VOID)
        .execution_options(synchronize_session=False)
    )


def rearm_notice(booking: Booking, kind: str, due_at: datetime, now: datetime) -> None:
    """Owe ``kind`` to ``booking`` again from ``due_at``: the one row per booking and
    kind (UNIQUE) is made pending afresh, or created."""
    notice = db.session.scalar(
        select(Notice).where(Notice.booking_id == booking.id, Notice.kind == kind)
    )
    if notice is None:
        queue_notice(booking, kind, now, due_at=due_at)
        return
    notice.status = NOTICE_PENDING
    notice.due_at = due_at
    notice.attempts = 0
    notice.queued_at = None
    notice.lease_until = None
    notice.last_error = ""
    db.session.info.setdefault(QUEUED_KEY, []).append(notice)


def owe_no_reminder(booking: Booking, now: datetime) -> None:
    """The moved booking is owed no reminder (its new slot starts within
    REMINDER_MINUTES, and the ``slot_moved`` message tells the time): its pending
    reminder is voided, or a void one written so the relay writes none
    (``write_due_reminders``)."""
    notice = db.session.scalar(
        select(Notice).where(Notice.booking_id == booking.id, Notice.kind == "reminder")
    )
    if notice is None:
        db.session.add(
            Notice(booking=booking, kind="reminder", status=NOTICE_VOID, created_at=now, due_at=now)
        )
    elif notice.status == NOTICE_PENDING:
        notice.status = NOTICE_VOID


def insert_notice(
    booking_id: int, kind: str, now: datetime, via: str = ""
) -> list[tuple[int, datetime]]:
    """Write the pending notice ``kind`` of booking ``booking_id``, due at ``now`` (aware
    UTC), with one Core statement (the booking path's: no ORM object is made); ``via``
    the channel it asks for (``via_for`` of the booking's channel).
    Returns: [(notice id, due instant)], for ``note_queued``."""
    conn = db.session.connection()
    values = _notice_values(booking_id, kind, now, via)
    return [tuple(row) for row in conn.execute(_INSERT_NOTICES, [values])]


def note_queued(notices: list[tuple[int, datetime]]) -> None:
    """Note notices written by Core statements ((id, due instant) pairs) for the hand-over
    after the commit (``notify.relay.hand_on_notices``)."""
    db.session.info.setdefault(QUEUED_KEY, []).extend(
        QueuedNotice(notice_id, due_at) for notice_id, due_at in notices
    )


def write_due_reminders(now: datetime | None = None) -> int:
    """Write the reminders whose time has come: one ``reminder`` notice, due
    REMINDER_MINUTES before the slot, for each confirmed booking with a phone whose
    slot starts within REMINDER_MINUTES after ``now`` (aware UTC) and that was made
    before that reminder time (a later booking's confirmation is its reminder).

    A reminder is owed by the clock, not by a change, so it is written when it falls
    due rather than with the booking (a rush of bookings writes one row less each).
    Several relays may run at once: UNIQUE (booking, kind) keeps one row. A booking
    moved into a slot starting too soon has a void reminder row, so none is written.
    Returns: how many were due (a concurrent relay may have written some of them);
      the caller commits.
    """
    now = now or utcnow()
    lead = timedelta(minutes=current_app.config["REMINDER_MINUTES"])
    written_already = (
        select(Notice.id).where(Notice.booking_id == Booking.id, Notice.kind == "reminder").exists()
    )
    candidates = db.session.execute(
        select(Booking.id, Booking.created_at, Slot.starts_at, VIA_OF_BOOKING)
        .join(Slot, Booking.slot_id == Slot.id)
        .where(
            Slot.starts_at > now,
            Slot.starts_at <= now + lead,
            Booking.status == CONFIRMED,
            Booking.phone != "",
            Booking.purged_at.is_(None),
            ~written_already,
        )
    ).all()
    owed = [
        {
            "booking_id": booking_id,
            "kind": "reminder",
            "status": NOTICE_PENDING,
            "created_at": now,
            "due_at": starts_at - lead,
            "via": via,
        }
        for booking_id, created_at, starts_at, via in candidates
        if created_at < starts_at - lead
    ]
    if not owed:
        return 0
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(
        insert(Notice).on_conflict_do_nothing(index_elements=[Notice.booking_id, Notice.kind]),
        owed,
    )
    return len(owed)


def retry_now(now: datetime | None = None, actor: Actor = CLI) -> int:
    """Make every notice waiting out a retry back-off (or failed) due at ``now``, with
    its attempts counted afresh; return how many. For an operator who fixed the cause;
    recorded in the audit log as ``actor``'s action, in the caller's one commit
    (``common.transactions``)."""
    now = now or utcnow()
    count = db.session.execute(
        update(Notice)
        .where(
            or_(
                and_(Notice.status == NOTICE_PENDING, Notice.attempts > 0),
                Notice.status == NOTICE_FAILED,
            )
        )
        .values(
            status=NOTICE_PENDING,
            due_at=now,
            attempts=0,
            queued_at=None,
            # Non-empty: the next attempt counts as a repeat (an earlier one may have
            # reached the channel).
            last_error=func.coalesce(func.nullif(Notice.last_error, ""), "sent again by hand"),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    record(actor, "notices.retry", "notice", "failed", {}, {"count": count}, now=now)
    return count


def failed_notices(limit: int = 200) -> list[Notice]:
    """Return the newest ``limit`` failed notices, with their bookings, for admins."""
    return db.session.scalars(
        select(Notice)
        .where(Notice.status == NOTICE_FAILED)
        .options(joinedload(Notice.booking).joinedload(Booking.slot).joinedload(Slot.market_point))
        .order_by(Notice.id.desc())
        .limit(limit)
    ).all()


def outbox_counts() -> dict[str, int]:
    """Return the number of notices per status (every status, zero included)."""
    counts = dict.fromkeys(
        (NOTICE_PENDING, NOTICE_SENDING, NOTICE_SENT, NOTICE_FAILED, NOTICE_VOID), 0
    )
    rows = db.session.execute(select(Notice.status, func.count(Notice.id)).group_by(Notice.status))
    counts.update({status: count for status, count in rows})
    return counts

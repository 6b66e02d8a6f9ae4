"""The outbox of messages to residents: render, claim, send, retry, relay.

The outbox rows (``slots.models.Notice``) are written in the transaction of the change
they tell about (``queue_notice`` below). Here they are delivered:

- ``commit_and_deliver`` commits a request's change and, after the response has gone
  out, hands the notices it queued on: to RQ when REDIS_URL is set (``jobs``), else
  straight to the channel (inline jobs, for ``make run``). A dead Redis neither fails
  nor slows the request: the rows stay pending and the relay finds them.
- ``relay_outbox`` finds the notices that are due and not yet handed on (or whose
  sender died mid-send) and marks them queued; ``jobs.relay`` enqueues them.
- ``deliver_notice`` sends one: it claims the row (a conditional update: pending, or
  sending with an expired lease -> sending), sends through the channel, marks it
  sent; a failure sets it back to pending with an exponential back-off, and after
  NOTIFY_MAX_ATTEMPTS marks it failed, which admins see (``failed_notices``).

Exactly once (issue 7): UNIQUE (booking_id, kind) makes one message per booking per
kind; the claim makes one sender at a time; a sender that died mid-send leaves a lease
that expires, and the next claim resends under the same message id, which the channel
does not deliver twice (``slots.channels``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import after_this_request, current_app, has_request_context, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import joinedload

from common.audit import CLI, Actor, record
from common.timeutil import utcnow, zone
from extensions import db
from slots.channels import (
    Channel,
    DeliveryError,
    DeliveryRefused,
    Message,
    Superseded,
    channel_from_config,
)
from slots.models import (
    CANCELLED,
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

log = logging.getLogger("antri.notices")


# Queueing -------------------------------------------------------------------------


@dataclass(frozen=True)
class QueuedNotice:
    """A notice written in this transaction, for ``notices.commit_and_deliver`` to hand
    on after the commit: its id and due instant (aware UTC)."""

    id: int
    due_at: datetime


INSERT_NOTICES = insert(Notice).returning(Notice.id, Notice.due_at)


def notice_values(booking_id: int, kind: str, now: datetime) -> dict:
    return {
        "booking_id": booking_id,
        "kind": kind,
        "status": NOTICE_PENDING,
        "created_at": now,
        "due_at": now,
    }


def queue_notice(
    booking: Booking, kind: str, now: datetime | None = None, due_at: datetime | None = None
) -> None:
    """Add the outbox row for message ``kind`` about ``booking`` (once per kind).

    Args: kind, one of ``NOTICE_KINDS``; now, aware UTC; due_at, aware UTC, the
      earliest instant to send it (default now).
    The row commits with the change it tells about (it is flushed with it), so a
    message exists exactly when its change does (the transactional outbox, issue 7);
    ``slots.notices.commit_and_deliver`` hands it on after the commit.
    """
    now = now or utcnow()
    notice = Notice(booking=booking, kind=kind, created_at=now, due_at=due_at or now)
    db.session.add(notice)
    db.session.info.setdefault("new_notices", []).append(notice)


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
    db.session.info.setdefault("new_notices", []).append(notice)


def owe_no_reminder(booking: Booking, now: datetime) -> None:
    """The moved booking is owed no reminder (its new slot starts within
    REMINDER_MINUTES, and the ``slot_moved`` message tells the time): its pending
    reminder is voided, or a void one written so the relay writes none
    (``notices.write_due_reminders``)."""
    notice = db.session.scalar(
        select(Notice).where(Notice.booking_id == booking.id, Notice.kind == "reminder")
    )
    if notice is None:
        db.session.add(
            Notice(booking=booking, kind="reminder", status=NOTICE_VOID, created_at=now, due_at=now)
        )
    elif notice.status == NOTICE_PENDING:
        notice.status = NOTICE_VOID


# A message is only worth sending while its booking is still in the state it tells
# about: a confirmation is not sent for a booking cancelled first (it would arrive
# after, or beside, the cancellation and point at a dead ticket). Others become void.
_SEND_WHILE = {
    "confirmation": (CONFIRMED,),
    "promotion": (CONFIRMED,),
    "reminder": (CONFIRMED,),
    "slot_moved": (CONFIRMED,),
    "cancellation": (CANCELLED,),
    "slot_closed": (CANCELLED,),
}


def commit_and_deliver() -> None:
    """Commit the session, then hand on the notices this transaction queued.

    In a request the hand-over runs after the response has gone out (the resident is
    not kept waiting), elsewhere (CLI, jobs) right away. With REDIS_URL set a worker
    is asked to relay the outbox (``jobs.kick_relay``: at most one job a second per
    process, however many bookings); without, the due notices are sent here.
    Errors are logged, never raised: the change is committed, and a notice left
    pending is sent by the relay (or ``flask notices deliver``).
    """
    queued = db.session.info.pop("new_notices", [])
    now = utcnow()
    due = [notice.id for notice in queued if notice.id is not None and notice.due_at <= now]
    db.session.commit()
    if not due:
        return
    app = current_app._get_current_object()
    if app.config["REDIS_URL"]:
        from jobs import kick_relay

        def hand_on() -> None:
            kick_relay(app)  # never raises; touches no database

    else:

        def hand_on() -> None:
            with app.app_context():
                try:
                    for notice_id in due:
                        deliver_notice(notice_id)
                except Exception:  # best effort; the rows stay pending for the relay
                    db.session.rollback()
                    log.exception("notice hand-over failed; notices stay pending")
                finally:
                    db.session.remove()

    if has_request_context():

        @after_this_request
        def _after(response):
            response.call_on_close(hand_on)
            return response

    else:
        hand_on()


# Rendering -----------------------------------------------------------------------


def _ticket_link(booking: Booking) -> str:
    from slots.codes import booking_access_key

    values = {"code": booking.code, "key": booking_access_key(booking.code), "_external": True}
    # Links in messages always point at the public address, not at whichever host
    # name the request that caused them happened to use.
    with current_app.test_request_context(base_url=current_app.config["PUBLIC_BASE_URL"]):
        return url_for("qr.ticket", **values)


def render_notice(notice: Notice) -> str:
    """Return the text of ``notice`` in the booking's language ("id" or "en").

    Every kind carries the ticket link (a cancelled ticket's page says so); times are
    the market point's local time with its zone abbreviation (e.g. WIB).
    """
    booking = notice.booking
    point = booking.slot.market_point
    start = booking.slot.starts_at.astimezone(zone(point.timezone))
    values = {
        "code": booking.code,
        "point": point.name,
        "when": f"{start:%d-%m-%Y %H:%M} {start:%Z}",
        "link": _ticket_link(booking),
    }
    with force_locale(booking.language or "id"):
        texts = {
            "confirmation": _(
                "Antri: booking %(code)s at %(point)s on %(when)s is confirmed. Ticket: %(link)s"
            ),
            "reminder": _(
                "Antri: reminder, your slot at %(point)s starts %(when)s. "
                "Show your ticket at the gate: %(link)s"
            ),
            "cancellation": _(
                "Antri: booking %(code)s at %(point)s on %(when)s is cancelled. Details: %(link)s"
            ),
            "promotion": _(
                "Antri: a place freed up. You have a booking %(code)s at %(point)s "
                "on %(when)s. Ticket: %(link)s"
            ),
            "slot_closed": _(
                "Antri: the market closed the slot of %(when)s at %(point)s. "
                "Booking %(code)s is cancelled; please book another slot. Details: %(link)s"
            ),
            "slot_moved": _(
                "Antri: the market moved booking %(code)s at %(point)s to %(when)s. "
                "Ticket: %(link)s"
            ),
        }
        return texts[notice.kind] % values


def message_for(notice: Notice) -> Message:
    """Return the channel message of ``notice``; its id is stable across attempts."""
    booking = notice.booking
    return Message(
        id=f"antri-notice-{notice.id}",
        kind=notice.kind,
        booking=booking.code,
        to=booking.phone,
        language=booking.language or "id",
        text=render_notice(notice),
    )


# Claiming and sending -------------------------------------------------------------


def _claimable(now: datetime):
    """The condition of a notice that a sender may claim at ``now``."""
    return and_(
        Notice.due_at <= now,
        or_(
            Notice.status == NOTICE_PENDING,
            and_(Notice.status == NOTICE_SENDING, Notice.lease_until < now),
        ),
    )


def retry_delay(attempts: int) -> timedelta:
    """Back-off before attempt ``attempts + 1``: NOTIFY_RETRY_SECONDS doubled per
    attempt made (30 s, 60 s, 120 s, ... by default), at most six hours."""
    base = current_app.config["NOTIFY_RETRY_SECONDS"]
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), 6 * 3600))


@dataclass(frozen=True)
class Outcome:
    """What ``deliver_notice`` did: status is sent, retry, failed, void, skipped
    (claimed elsewhere, not due, or done already) or superseded (this sender's claim
    was taken over while it worked); retry_at, aware UTC, for retry."""

    status: str
    retry_at: datetime | None = None


def deliver_notice(
    notice_id: int, now: datetime | None = None, channel: Channel | None = None
) -> Outcome:
    """Send one notice through the channel, at most one sender at a time.

    Args: notice_id; now, aware UTC, the instant that decides what is due (default:
      the clock; tests and operators pass another); channel (default NOTIFY_CHANNEL).
    Returns: an Outcome. Never raises for a channel failure: it is recorded on the
      row (retry with back-off, or failed after NOTIFY_MAX_ATTEMPTS).
    The claim is identified by its lease's end instant (unique per claim, as claims
    are serialised on the row); the channel is given a fence to check that the claim
    is still this sender's right before it delivers, so a sender that stalled past its
    lease does not deliver what its successor delivers.
    """
    due_now = now or utcnow()
    channel = channel or channel_from_config()
    config = current_app.config
    # The lease runs on the real clock, whatever instant decides due-ness.
    lease_until = max(utcnow(), due_now) + timedelta(seconds=config["NOTIFY_LEASE_SECONDS"])
    claimed = db.session.execute(
        update(Notice)
        .where(Notice.id == notice_id, _claimable(due_now))
        .values(
            status=NOTICE_SENDING,
            attempts=Notice.attempts + 1,
            lease_until=lease_until,
            channel=channel.name,
        )
        .returning(Notice.attempts, Notice.last_error)
        .execution_options(synchronize_session=False)
    ).first()
    db.session.commit()  # the claim is visible to every other sender from here
    if claimed is None:
        return Outcome("skipped")
    attempts, last_error = claimed
    notice = db.session.scalar(
        select(Notice)
        .where(Notice.id == notice_id)
        .options(joinedload(Notice.booking).joinedload(Booking.slot).joinedload(Slot.market_point))
    )
    mine = and_(Notice.id == notice_id, Notice.lease_until == lease_until)
    booking = notice.booking
    # Nobody to tell: purged, booked without a phone (assisted), or moved on since.
    if (
        booking.purged_at is not None
        or not booking.phone
        or booking.status not in _SEND_WHILE.get(notice.kind, ())
    ):
        _finish(mine, status=NOTICE_VOID, lease_until=None)
        return Outcome("void")

    def still_mine() -> bool:
        db.session.rollback()  # a fresh snapshot
        return db.session.scalar(select(func.count(Notice.id)).where(mine)) == 1

    try:
        # A repeat: an earlier attempt may have reached the channel before it failed.
        repeat = attempts > 1 or bool(last_error)
        channel.send(message_for(notice), repeat=repeat, now=due_now, fence=still_mine)
    except Superseded:
        return Outcome("superseded")
    except Exception as exc:  # noqa: BLE001 (a rendering bug must not wedge the row either)
        error = f"{type(exc).__name__}: {exc}"[:300]
        if isinstance(exc, DeliveryRefused) or attempts >= config["NOTIFY_MAX_ATTEMPTS"]:
            log.warning("notice %s failed for good: %s", notice_id, error)
            done = _finish(mine, status=NOTICE_FAILED, lease_until=None, last_error=error)
            return Outcome("failed" if done else "superseded")
        if not isinstance(exc, DeliveryError):
            log.exception("notice %s could not be rendered or sent", notice_id)
        retry_at = due_now + retry_delay(attempts)
        done = _finish(
            mine,
            status=NOTICE_PENDING,
            lease_until=None,
            queued_at=None,
            due_at=retry_at,
            last_error=error,
        )
        return Outcome("retry" if done else "superseded", retry_at)
    done = _finish(mine, status=NOTICE_SENT, sent_at=utcnow(), lease_until=None, last_error="")
    return Outcome("sent" if done else "superseded")


def _finish(mine, **values) -> bool:
    """Record the end of this sender's attempt; False (and no change) when a later
    claim took over: its own attempt decides."""
    done = db.session.execute(
        update(Notice)
        .where(mine, Notice.status == NOTICE_SENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return done == 1


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
        select(Booking.id, Booking.created_at, Slot.starts_at)
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
        }
        for booking_id, created_at, starts_at in candidates
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


def relay_outbox(now: datetime | None = None, limit: int = 500) -> list[int]:
    """Write the reminders that fell due (``write_due_reminders``), then mark up to
    ``limit`` notices due for sending as queued and return their ids.

    Due: pending with ``due_at`` passed, not handed on within NOTIFY_LEASE_SECONDS
    (so an id lost with a Redis restart is handed on again, but a queue backlog is not
    flooded), or sending with an expired lease (its sender died). Several relays may
    run at once: the conditional update gives each id to one of them.
    Args: now, aware UTC. Returns: ids, oldest first; the caller commits and enqueues.
    """
    now = now or utcnow()
    write_due_reminders(now)
    stale = now - timedelta(seconds=current_app.config["NOTIFY_LEASE_SECONDS"])
    not_queued = or_(Notice.queued_at.is_(None), Notice.queued_at <= stale)
    ids = db.session.scalars(
        select(Notice.id)
        .where(_claimable(now), not_queued)
        .order_by(Notice.due_at, Notice.id)
        .limit(limit)
    ).all()
    if not ids:
        return []
    taken = db.session.scalars(
        update(Notice)
        .where(Notice.id.in_(ids), _claimable(now), not_queued)
        .values(queued_at=now)
        .returning(Notice.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(taken)


def deliver_pending(now: datetime | None = None, limit: int = 500) -> int:
    """Send, in this process, up to ``limit`` notices that are due; return how many
    were sent. Used by inline jobs and ``flask notices deliver``."""
    ids = relay_outbox(now, limit)
    db.session.commit()
    channel = channel_from_config()
    # ``now`` passes through as given: None lets each claim read the clock when it
    # happens, so a long batch does not hand out leases that ended already.
    return sum(deliver_notice(notice_id, now, channel).status == NOTICE_SENT for notice_id in ids)


def retry_now(now: datetime | None = None, actor: Actor = CLI) -> int:
    """Make every notice waiting out a retry back-off (or failed) due at ``now``, with
    its attempts counted afresh; return how many. For an operator who fixed the cause;
    recorded in the audit log as ``actor``'s action, in the same commit."""
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
    db.session.commit()
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

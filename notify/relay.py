"""Delivering the outbox: hand-over after the commit, claim, send, retry, relay.

- ``hand_on_notices``, run by the one commit (``common.transactions``), hands the
  notices a transaction queued on once it committed (in a request, after the
  response): with REDIS_URL set, to the relay kick registered at app start
  (``init_app``; ``jobs.kick_relay`` enqueues the relay job), else straight to the
  channel (inline jobs, for ``make run``). A dead Redis neither fails nor slows
  the request: the rows stay pending and the relay finds them. The kick is injected so
  that this package never imports ``jobs`` (which imports the app factory).
- ``relay_outbox`` finds the notices that are due and not yet handed on (or whose
  sender died mid-send) and marks them queued; ``jobs.relay`` enqueues them.
- ``deliver_notice`` sends one: it claims the row (a conditional update: pending, or
  sending with an expired lease -> sending), sends through the channel, marks it
  sent; a failure sets it back to pending with an exponential back-off, and after
  NOTIFY_MAX_ATTEMPTS marks it failed, which admins see (``outbox.failed_notices``).

Exactly once (issue 7): UNIQUE (booking_id, kind) makes one message per booking per
kind; the claim makes one sender at a time; a sender that died mid-send leaves a lease
that expires, and the next claim resends under the same message id, which the channel
does not deliver twice (``notify.channels``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session, joinedload

from common import transactions
from common.timeutil import utcnow
from extensions import db
from notify.channels import (
    Channel,
    DeliveryError,
    DeliveryRefused,
    Superseded,
    channel_from_config,
    channel_named,
)
from notify.messages import message_for
from notify.outbox import QUEUED_KEY, write_due_reminders
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

# ``app.extensions`` key of the function that asks a worker to relay the outbox.
KICK_KEY = "notify.kick_relay"


def init_app(app: Flask, kick_relay: Callable[[Flask], None]) -> None:
    """Hand on new notices after every commit (``hand_on_notices``), and register
    ``kick_relay(app)``, called after a commit that queued due notices when REDIS_URL is
    set; it must never raise nor touch the database (``jobs.kick_relay``)."""
    app.extensions[KICK_KEY] = kick_relay
    transactions.add_after_commit(app, hand_on_notices)


# A message is only worth sending while its booking is still in the state it tells
# about: a confirmation is not sent for a booking cancelled first (it would arrive
# after, or beside, the cancellation and point at a dead ticket). Others become void.
_SEND_WHILE = {
    "confirmation": (CONFIRMED,),
    "promotion": (CONFIRMED,),
    "reminder": (CONFIRMED,),
    "slot_moved": (CONFIRMED,),
    # A proxy is named or removed only while the booking is confirmed (issue 15 part 3).
    "proxy_set": (CONFIRMED,),
    "proxy_removed": (CONFIRMED,),
    "cancellation": (CANCELLED,),
    "slot_closed": (CANCELLED,),
}


def hand_on_notices(session: Session) -> Callable[[], None] | None:
    """After-commit hook (``common.transactions.add_after_commit``, registered by
    ``init_app``): hand on the notices this transaction queued that are due now.

    Args: session, about to commit; the notices noted under ``QUEUED_KEY`` in its
      ``info`` (by ``notify.outbox.note_queued``) are taken from it.
    Returns: None when none is due, else the hand-over, which ``common.transactions``
      runs once the commit succeeded (after the response in a request, at once in a
      command or job): with REDIS_URL set, the relay kick registered by ``init_app``
      (``jobs.kick_relay``: at most one job per RELAY_KICK_SECONDS per process, however
      many bookings); without, the due notices are sent from here (``make run``).
      The hand-over never raises: a notice left pending is sent by the relay (or
      ``flask notices deliver``). Rule: issue 7, the transactional outbox.
    """
    queued = session.info.pop(QUEUED_KEY, [])
    now = utcnow()
    due = [notice.id for notice in queued if notice.id is not None and notice.due_at <= now]
    if not due:
        return None
    app = current_app._get_current_object()
    if app.config["REDIS_URL"]:
        return functools.partial(_kick, app)
    return functools.partial(_deliver_inline, app, due)


def _kick(app: Flask) -> None:
    kick = app.extensions.get(KICK_KEY)  # looked up when run (tests replace it)
    if kick is not None:
        kick(app)  # never raises; touches no database


def _deliver_inline(app: Flask, due: list[int]) -> None:
    """Send the notices ``due`` (ids) from this process, in a session of their own."""
    with app.app_context():
        try:
            for notice_id in due:
                deliver_notice(notice_id)
        except Exception:  # best effort; the rows stay pending for the relay
            db.session.rollback()
            log.exception("notice hand-over failed; notices stay pending")
        finally:
            db.session.remove()


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
      the clock; tests and operators pass another); channel, the default channel
      (default NOTIFY_CHANNEL): a notice whose ``via`` names another channel goes
      through that one (``notify.channels.channel_named``).
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
            channel=case((Notice.via != "", Notice.via), else_=channel.name),
        )
        .returning(Notice.attempts, Notice.last_error, Notice.via)
        .execution_options(synchronize_session=False)
    ).first()
    transactions.commit()  # the claim is visible to every other sender from here
    if claimed is None:
        return Outcome("skipped")
    attempts, last_error, via = claimed
    notice = db.session.scalar(
        select(Notice)
        .where(Notice.id == notice_id)
        .options(joinedload(Notice.booking).joinedload(Booking.slot).joinedload(Slot.market_point))
    )
    mine = and_(Notice.id == notice_id, Notice.lease_until == lease_until)
    booking = notice.booking
    # Nobody to tell: purged, booked without a phone (assisted), or moved on since.
    # A direct notice (no booking) names its own recipient, erased by the purge.
    if (
        not notice.to_phone
        if booking is None
        else (
            booking.purged_at is not None
            or not booking.phone
            or booking.status not in _SEND_WHILE.get(notice.kind, ())
        )
    ):
        _finish(mine, status=NOTICE_VOID, lease_until=None)
        return Outcome("void")

    def still_mine() -> bool:
        db.session.rollback()  # a fresh snapshot
        return db.session.scalar(select(func.count(Notice.id)).where(mine)) == 1

    try:
        # A repeat: an earlier attempt may have reached the channel before it failed.
        repeat = attempts > 1 or bool(last_error)
        if via:
            channel = channel_named(via)
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
    transactions.commit()
    return done == 1


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
    transactions.commit()
    channel = channel_from_config()
    # ``now`` passes through as given: None lets each claim read the clock when it
    # happens, so a long batch does not hand out leases that ended already.
    return sum(deliver_notice(notice_id, now, channel).status == NOTICE_SENT for notice_id in ids)

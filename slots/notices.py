"""Delivering the notice outbox, inline after a request's commit.

The outbox rows (``slots.models.Notice``) are written in the booking transaction; here
each pending row is claimed (pending -> sent, a conditional update, so two processes
never both send it) and appended as one JSON line to NOTIFY_LOG_FILE, the ``log``
channel. A crash between the claim and the write loses that line (at most once);
the RQ relay of a later release makes delivery exactly once. Delivery never fails
the request that caused it: the change is committed
already, and a row left pending is picked up by the next delivery.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flask import after_this_request, current_app, has_request_context, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from common.timeutil import utcnow, zone
from extensions import db
from slots.models import Booking, Notice, Slot

log = logging.getLogger("antri.notices")


def commit_and_deliver() -> None:
    """Commit the session, then deliver the notices this transaction queued.

    The messages are rendered before the commit, from rows already in memory; in a
    request they are sent after the response has gone out (the resident is not kept
    waiting), elsewhere (CLI, jobs) right away. Errors are logged, never raised: the
    change is committed, and a notice left pending is sent by ``deliver_pending``.
    """
    queued = db.session.info.pop("new_notices", [])
    outbox = [(notice.id, _line(notice)) for notice in queued if notice.id is not None]
    db.session.commit()
    if not outbox:
        return
    app = current_app._get_current_object()

    def deliver() -> None:
        with app.app_context():
            try:
                _send(outbox)
            except Exception:  # best effort; the rows stay pending for the sweep
                db.session.rollback()
                log.exception("notice delivery failed; notices stay pending")
            finally:
                db.session.remove()

    if has_request_context():

        @after_this_request
        def _after(response):
            response.call_on_close(deliver)
            return response

    else:
        deliver()


def _line(notice: Notice) -> dict:
    """The log channel's record of ``notice`` (without the send time)."""
    return {
        "notice_id": notice.id,
        "kind": notice.kind,
        "booking": notice.booking.code,
        "to": notice.booking.phone,
        "text": render_notice(notice),
    }


def _send(outbox: list[tuple[int, dict]]) -> int:
    """Claim the pending notices of ``outbox`` (pending -> sent, one committed
    conditional update, so a notice claimed elsewhere is skipped and none goes out
    twice), then append their lines to NOTIFY_LOG_FILE. Returns how many were sent."""
    now = utcnow()
    claimed = set(
        db.session.scalars(
            update(Notice)
            .where(
                Notice.id.in_([notice_id for notice_id, _ in outbox]), Notice.status == "pending"
            )
            .values(status="sent", sent_at=now)
            .returning(Notice.id)
            .execution_options(synchronize_session=False)
        ).all()
    )
    db.session.commit()
    lines = [
        json.dumps({"at": now.isoformat(), **line}, ensure_ascii=False)
        for notice_id, line in outbox
        if notice_id in claimed
    ]
    if lines:
        try:
            path = Path(current_app.config["NOTIFY_LOG_FILE"])
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))
        except OSError:
            # Not written: give the claims back so the next sweep sends them.
            db.session.execute(
                update(Notice)
                .where(Notice.id.in_(claimed))
                .values(status="pending", sent_at=None)
                .execution_options(synchronize_session=False)
            )
            db.session.commit()
            raise
    return len(lines)


def _ticket_link(notice: Notice) -> str:
    from slots.service import booking_access_key

    booking = notice.booking
    values = {"code": booking.code, "key": booking_access_key(booking.code), "_external": True}
    if has_request_context():
        return url_for("qr.ticket", **values)
    with current_app.test_request_context(base_url=current_app.config["PUBLIC_BASE_URL"]):
        return url_for("qr.ticket", **values)


def render_notice(notice: Notice) -> str:
    """Return the message text of ``notice`` in Bahasa Indonesia, with the ticket link."""
    booking = notice.booking
    point = booking.slot.market_point
    start = booking.slot.starts_at.astimezone(zone(point.timezone))
    when = f"{start:%d-%m-%Y %H:%M} {start:%Z}"
    with force_locale("id"):
        if notice.kind == "cancellation":
            text = _("Antri: booking %(code)s at %(point)s on %(when)s is cancelled.")
        elif notice.kind == "promotion":
            text = _(
                "Antri: a place freed up. You have a booking %(code)s at %(point)s "
                "on %(when)s. Ticket: %(link)s"
            )
        else:
            text = _(
                "Antri: booking %(code)s at %(point)s on %(when)s is confirmed. Ticket: %(link)s"
            )
    return text % {
        "code": booking.code,
        "point": point.name,
        "when": when,
        "link": _ticket_link(notice),
    }


def deliver_pending(limit: int = 100) -> int:
    """Send up to ``limit`` notices still pending (oldest first); return how many."""
    ids = db.session.scalars(
        select(Notice.id).where(Notice.status == "pending").order_by(Notice.id).limit(limit)
    ).all()
    return deliver_notices(list(ids))


def deliver_notices(ids: list[int]) -> int:
    """Send the pending notices among ``ids`` through the log channel; return how many."""
    if not ids:
        return 0
    notices = db.session.scalars(
        select(Notice)
        .where(Notice.id.in_(ids), Notice.status == "pending")
        .options(joinedload(Notice.booking).joinedload(Booking.slot).joinedload(Slot.market_point))
        .order_by(Notice.id)
    ).all()
    return _send([(notice.id, _line(notice)) for notice in notices])

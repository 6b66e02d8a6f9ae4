"""Delivering the notice outbox, inline after a request's commit.

The outbox rows (``slots.models.Notice``) are written in the booking transaction; here
each pending row is claimed (pending -> sent, a conditional update, so two processes
never both send it) and appended as one JSON line to NOTIFY_LOG_FILE, the ``log``
channel. Delivery never fails the request that caused it: the change is committed
already, and a row left pending is picked up by the next delivery.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flask import current_app, has_request_context, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select, update

from common.timeutil import utcnow, zone
from extensions import db
from slots.models import Notice

log = logging.getLogger("antri.notices")


def commit_and_deliver() -> None:
    """Commit the session, then deliver pending notices (errors are logged, not raised)."""
    db.session.commit()
    try:
        deliver_pending()
    except Exception:  # delivery is best effort here; the rows stay pending
        db.session.rollback()
        log.exception("notice delivery failed; notices stay pending")


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
    """Send up to ``limit`` pending notices through the log channel.

    Returns: how many were sent. Each is claimed in its own committed update before
    its line is written, so no notice is written twice.
    """
    path = Path(current_app.config["NOTIFY_LOG_FILE"])
    sent = 0
    ids = db.session.scalars(
        select(Notice.id).where(Notice.status == "pending").order_by(Notice.id).limit(limit)
    ).all()
    for notice_id in ids:
        now = utcnow()
        claimed = db.session.execute(
            update(Notice)
            .where(Notice.id == notice_id, Notice.status == "pending")
            .values(status="sent", sent_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            db.session.rollback()
            continue
        notice = db.session.get(Notice, notice_id)
        line = {
            "at": now.isoformat(),
            "notice_id": notice.id,
            "kind": notice.kind,
            "booking": notice.booking.code,
            "to": notice.booking.phone,
            "text": render_notice(notice),
        }
        db.session.commit()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        sent += 1
    return sent

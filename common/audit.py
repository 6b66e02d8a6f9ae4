"""The audit log: who did what to which record, when, with the values before and after.

Every admin action and every check-in override writes one row, in the transaction of
the change itself (a change and its record commit together or not at all). The table
is append-only: the database refuses UPDATE and DELETE on it (triggers made by
migration 0004), so not even the app can rewrite history.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from common.text import safe_cell
from common.timeutil import UTCDateTime, utcnow
from extensions import db


class AuditEntry(db.Model):
    """One recorded action. ``actor`` keeps the account's e-mail (or ``cli``) as it was,
    so the record stays readable whatever happens to the account later; ``before`` and
    ``after`` are JSON objects of the fields that matter for the action."""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    market_point_id: Mapped[int | None] = mapped_column(ForeignKey("market_point.id"))
    before: Mapped[str] = mapped_column(Text, default="{}")
    after: Mapped[str] = mapped_column(Text, default="{}")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")


@dataclass(frozen=True)
class Actor:
    """Who acts: an account (id and e-mail) or an operator at the command line
    (``id`` None, ``label`` such as ``cli``), and from where (the client's address as
    the view saw it; "" for the CLI and jobs)."""

    id: int | None
    label: str
    remote_addr: str = ""

    @classmethod
    def of(cls, user: Any, remote_addr: str | None = "") -> Actor:
        """The actor for a signed-in ``accounts.models.User``; the view passes the
        request's address (services never read the request themselves)."""
        return cls(user.id, user.email, remote_addr or "")


CLI = Actor(None, "cli")


def _plain(value: Any) -> Any:
    """A JSON-safe form of ``value`` (instants and times as ISO 8601 text)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def record(
    actor: Actor,
    action: str,
    target_type: str,
    target_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    market_point_id: int | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Add an audit row to the current transaction (it commits with the change).

    Args: actor; action, a dotted name such as ``slot.capacity``; target_type and
      target_id, the record acted on; before/after, the fields that changed (JSON-safe
      after ``_plain``); market_point_id, for filtering; now, aware UTC.
    Returns: the new AuditEntry (added, not flushed).
    """
    entry = AuditEntry(
        at=now or utcnow(),
        actor_id=actor.id,
        actor=actor.label,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        market_point_id=market_point_id,
        before=json.dumps({k: _plain(v) for k, v in (before or {}).items()}, ensure_ascii=False),
        after=json.dumps({k: _plain(v) for k, v in (after or {}).items()}, ensure_ascii=False),
        remote_addr=actor.remote_addr[:64],
    )
    db.session.add(entry)
    return entry


def search(
    action: str = "",
    actor: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    market_point_id: int | None = None,
    limit: int = 500,
) -> list[AuditEntry]:
    """Return audit rows, newest first, filtered by action prefix, actor e-mail
    (substring), time range [since, until) (aware UTC) and market point."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action.startswith(action, autoescape=True))
    if actor:
        query = query.where(AuditEntry.actor.contains(actor, autoescape=True))
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if market_point_id is not None:
        query = query.where(AuditEntry.market_point_id == market_point_id)
    return list(db.session.scalars(query))


CSV_COLUMNS = ("id", "at", "actor", "action", "target_type", "target_id", "before", "after")


def to_csv(entries: list[AuditEntry]) -> str:
    """Return ``entries`` as CSV text (UTF-8 with BOM added by the caller; instants in
    UTC ISO 8601). Cells that a spreadsheet would run as a formula are quoted with a
    leading apostrophe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        row = [entry.id, entry.at.isoformat(), entry.actor, entry.action, entry.target_type]
        row += [entry.target_id, entry.before, entry.after]
        writer.writerow([safe_cell(str(cell)) for cell in row])
    return out.getvalue()

"""What the admin pages share: who acts, the market points to choose from, and how an
action's outcome is told (a flashed message on the same page).

Views do not commit: the request's one transaction (``common.transactions.run_view``)
commits after a view that answered under 400. A view that met a domain error and still
answers a page (with the error flashed) rolls back first (``failed``), so nothing the
failed action wrote is committed with the page.
"""

from __future__ import annotations

from flask import flash, request
from flask_login import current_user
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from common import audit
from common.errors import DomainError
from extensions import db
from slots.models import MarketPoint


def actor() -> audit.Actor:
    """The signed-in admin and their address, as the audit log records them."""
    return audit.Actor.of(current_user, request.remote_addr)


def market_points() -> list[MarketPoint]:
    """Every market point (active or not), by code."""
    return list(db.session.scalars(select(MarketPoint).order_by(MarketPoint.code)))


def point_choices(blank: bool = False) -> list[SelectChoice]:
    """The market points as select choices ``(code, "code name")``; with ``blank``
    first a ``("", "-")`` for none."""
    choices = [SelectChoice(p.code, f"{p.code} {p.name}") for p in market_points()]
    return ([SelectChoice("", "-")] if blank else []) + choices


def done(message: str) -> None:
    """Tell the admin the action succeeded (it commits with the request)."""
    flash(message, "ok")


def failed(exc: DomainError) -> None:
    """Undo what the failed action wrote and tell the admin why, on the same page."""
    db.session.rollback()
    flash(str(exc.message), "error")

"""Admin pages: running a market operation (points, schedules, slots, accounts, audit
log, messages), and assisted booking for staff."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from admin import (  # noqa: E402,F401  (routes register on import)
    account_pages,
    assist,
    audit_log,
    outbox,
    points,
    schedules,
    slot_pages,
)

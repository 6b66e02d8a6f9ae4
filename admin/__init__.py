"""Admin pages: running a market operation (the outbox of messages, for now)."""

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from admin import views  # noqa: E402,F401  (routes register on import)

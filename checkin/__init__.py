"""The gate (staff scanning) and the supervisor's live occupancy."""

from flask import Blueprint

bp = Blueprint("checkin", __name__)

from checkin import views  # noqa: E402,F401  (routes register on import)

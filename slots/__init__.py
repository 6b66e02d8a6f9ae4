"""Market points, slots, capacity and bookings: the resident's side of Antri."""

from flask import Blueprint

bp = Blueprint("slots", __name__)

from slots import views  # noqa: E402,F401  (routes register on import)

"""The JSON API (``/api/v1``) over the same services as the pages, one module per
resource; ``api/schemas.py`` declares every body, ``api/spec.py`` validates them and
builds ``GET /api/v1/openapi.json`` (rendered at ``/api/v1/docs``).

It lives outside the feature packages because one response (a booking with its
ticket) spans slots and qr, and the features must not import each other upward.
"""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from api import (  # noqa: E402,F401  (routes register on import)
    admin,
    ballots,
    bookings,
    channels,
    docs,
    exports,
    gate,
    keys,
    market_points,
    occupancy,
    stock,
    waiting_list,
)

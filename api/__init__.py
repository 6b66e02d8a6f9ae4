"""The JSON API (``/api/v1``) over the same services as the pages.

It lives outside the feature packages because one response (a booking with its
ticket) spans slots and qr, and the features must not import each other upward.
"""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from api import admin, views  # noqa: E402,F401  (routes register on import)

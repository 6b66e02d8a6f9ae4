"""Tickets: signed tokens, QR images and the resident's ticket pages."""

from flask import Blueprint

bp = Blueprint("qr", __name__)

from qr import views  # noqa: E402,F401  (routes register on import)

"""Staff, supervisor and admin accounts: login sessions and API bearer tokens."""

from flask import Blueprint

bp = Blueprint("accounts", __name__)

from accounts import views  # noqa: E402,F401  (routes register on import)

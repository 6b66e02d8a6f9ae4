"""Rate limits (Flask-Limiter): per IP and per NIK on booking, per IP and per booking
code on ticket look-up. Limits come from config so operators can tune them; mobile
carriers put many residents behind one IP (CGNAT), so the per-IP limits are wide and
the per-NIK and per-code ones are tight.

The per-code budget is one counter per code shared by every path that takes a code and
a phone (``code_budget``): guessing a phone number costs the same on any of them.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from flask import current_app, request
from flask_limiter import RouteLimit

from extensions import limiter

# The one scope of the per-code look-up budget (issue 14 item 2): every route decorated
# with ``code_budget`` counts in it, so the routes share one counter per code.
LOOKUP_CODE_SCOPE = "lookup-code"


def booking_ip_limit() -> str:
    """Limit string for booking and waiting-list joins per client IP."""
    return current_app.config["RATE_LIMIT_BOOKING_IP"]


def booking_nik_limit() -> str:
    """Limit string for booking and waiting-list joins per NIK."""
    return current_app.config["RATE_LIMIT_BOOKING_NIK"]


def lookup_ip_limit() -> str:
    """Limit string for ticket look-up and cancel per client IP."""
    return current_app.config["RATE_LIMIT_LOOKUP_IP"]


def lookup_code_limit() -> str:
    """Limit string for ticket look-up and cancel per booking code (guessing phones)."""
    return current_app.config["RATE_LIMIT_LOOKUP_CODE"]


def _submitted_nik() -> str | None:
    if request.is_json:
        body = request.get_json(silent=True)
        raw = body.get("nik") if isinstance(body, dict) else None
    else:
        raw = request.form.get("nik")
    if not isinstance(raw, str):
        return None
    digits = re.sub(r"[\s.\-]", "", raw)
    return digits or None


def nik_key() -> str:
    """Rate-limit key of the request's NIK: a keyed hash, never the NIK itself."""
    nik = _submitted_nik() or ""
    digest = hmac.new(current_app.config["NIK_HASH_KEY"].encode(), nik.encode(), hashlib.sha256)
    return "nik:" + digest.hexdigest()[:32]


def no_nik() -> bool:
    """True when the request carries no NIK (the per-NIK limit does not apply)."""
    return _submitted_nik() is None


def code_key() -> str:
    """Rate-limit key of the booking code in the URL or form (case and dashes folded)."""
    raw = (request.view_args or {}).get("code") or request.form.get("code") or ""
    return "code:" + re.sub(r"[\s\-]", "", str(raw)).upper()[:16]


def code_budget(methods: list[str] | None = None) -> RouteLimit:
    """Decorator: count the request in its booking code's one look-up budget.

    RATE_LIMIT_LOOKUP_CODE (default ``10/minute;50/hour``) is shared by the API look-up
    and cancel, the waiting-list look-up and leave, and the *Tiket saya* form: every
    request with the code counts, whichever phone it carries (issue 14 item 2; before,
    each path had a budget of its own). Args: methods, the HTTP methods counted (all
    when None; the form counts only its POST). Past the budget: 429 ``rate_limited``
    with Retry-After.
    """
    return limiter.shared_limit(
        lookup_code_limit, scope=LOOKUP_CODE_SCOPE, key_func=code_key, methods=methods
    )

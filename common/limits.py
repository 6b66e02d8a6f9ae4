"""Rate limits (Flask-Limiter): per IP and per NIK on booking, per IP and per booking
code on ticket look-up. Limits come from config so operators can tune them; mobile
carriers put many residents behind one IP (CGNAT), so the per-IP limits are wide and
the per-NIK and per-code ones are tight.

The per-code budget is one counter per code shared by every path that takes a code and
a phone (``code_budget``): guessing a phone number costs the same on any of them.

Sign-in is a back-off, not a lock-out (issue 14 item 1): only failed sign-ins count
(``failed_sign_in``), per account from one address and per address, never per account
alone, so a stranger's failures elsewhere cannot keep staff out.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from flask import Response, current_app, g, request
from flask_limiter import RouteLimit
from flask_limiter.util import get_remote_address

from extensions import limiter

# The one scope of the per-code look-up budget (issue 14 item 2): every route decorated
# with ``code_budget`` counts in it, so the routes share one counter per code.
LOOKUP_CODE_SCOPE = "lookup-code"
# ``flask.g`` attribute set by the sign-in view when a password was tried and wrong.
FAILED_SIGN_IN = "antri_failed_sign_in"


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


def login_account_limit() -> str:
    """Limit string of failed sign-ins per account from one client address
    (LOGIN_LIMIT_PER_ACCOUNT, default ``5/minute;30/hour``)."""
    return current_app.config["LOGIN_LIMIT_PER_ACCOUNT"]


def login_address_limit() -> str:
    """Limit string of failed sign-ins per client address over every account
    (LOGIN_LIMIT_PER_ADDRESS, default ``20/minute;200/hour``)."""
    return current_app.config["LOGIN_LIMIT_PER_ADDRESS"]


def login_account_key() -> str:
    """Rate-limit key of the e-mail typed (folded as ``accounts.service.authenticate``
    folds it, then hashed: no address in the store) and the client's address."""
    email = (request.form.get("email") or "").strip().lower()
    digest = hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"login:{digest}:{get_remote_address() or ''}"


def mark_failed_sign_in() -> None:
    """Note that this request tried a password and it was wrong (the sign-in view
    calls it), so the sign-in budgets count it after the response."""
    setattr(g, FAILED_SIGN_IN, True)


def failed_sign_in(_response: Response) -> bool:
    """Flask-Limiter's ``deduct_when`` for the sign-in limits: True only when the view
    marked a wrong password. A success, a form fault (nothing tried) or a refusal
    costs nothing."""
    return bool(g.get(FAILED_SIGN_IN))

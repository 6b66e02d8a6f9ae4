"""Login and logout pages."""

from __future__ import annotations

import math
import time
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_limiter import RateLimitExceeded
from flask_login import current_user, login_user, logout_user

from accounts import bp
from accounts.forms import LoginForm
from accounts.models import STAFF
from accounts.service import authenticate, record_refused_sign_in
from common.limits import (
    failed_sign_in,
    login_account_key,
    login_account_limit,
    login_address_limit,
    mark_failed_sign_in,
)
from common.transactions import commit
from extensions import limiter


def _home_for(user) -> str:
    return url_for("checkin.gate") if user.role == STAFF else url_for("checkin.supervisor")


def _safe_next(target: str | None) -> str | None:
    """Only follow a same-site relative ``next`` (no open redirect)."""
    if not target or any(ord(ch) < 32 or ch == "\\" for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_address_limit, methods=["POST"], deduct_when=failed_sign_in)
@limiter.limit(
    login_account_limit, key_func=login_account_key, methods=["POST"], deduct_when=failed_sign_in
)
def login():
    """Sign in staff, supervisors and admins.

    Failed sign-ins back off per account and address and per address (issue 14 item 1;
    ``common.limits``): past a budget the page answers 429 (``sign_in_limited``).
    """
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or _home_for(user))
        mark_failed_sign_in()
        flash(_("Wrong email or password."), "error")
    status = 400 if request.method == "POST" else 200
    return render_template("accounts/login.html", form=form), status


@bp.errorhandler(RateLimitExceeded)
def sign_in_limited(exc: RateLimitExceeded):
    """Answer a sign-in refused by the back-off: the sign-in page (the e-mail kept) with
    how long to wait, status 429 with Retry-After (Flask-Limiter adds it), and an audit
    row ``account.sign_in_limited`` (issue 14 item 1)."""
    record_refused_sign_in(
        request.form.get("email", ""), request.remote_addr or "", str(exc.limit.limit)
    )
    # Flask-Limiter refuses in the view's decorator, before its body runs; the request's
    # wrapper (run_view) has ended that transaction keeping nothing. The audit row is
    # this answer's only write and must outlast the refusal, so it commits here.
    commit()
    current = limiter.current_limit
    seconds = current.reset_at - time.time() if current is not None else 60
    minutes = max(1, math.ceil(seconds / 60))
    flash(
        ngettext(
            "Too many failed sign-ins. Please wait %(num)d minute and try again.",
            "Too many failed sign-ins. Please wait %(num)d minutes and try again.",
            minutes,
        ),
        "error",
    )
    return render_template("accounts/login.html", form=LoginForm()), 429


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign out (POST with a CSRF token, so a link cannot sign anyone out)."""
    if current_user.is_authenticated:
        logout_user()
    return redirect(url_for("accounts.login"))

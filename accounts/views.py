"""Login and logout pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from accounts import bp
from accounts.forms import LoginForm
from accounts.models import STAFF
from accounts.service import authenticate


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
def login():
    """Sign in staff, supervisors and admins."""
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")) or _home_for(user))
        flash(_("Wrong email or password."), "error")
    status = 400 if request.method == "POST" else 200
    return render_template("accounts/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign out (POST with a CSRF token, so a link cannot sign anyone out)."""
    if current_user.is_authenticated:
        logout_user()
    return redirect(url_for("accounts.login"))

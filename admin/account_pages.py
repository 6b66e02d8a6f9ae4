"""Admin pages of accounts and bearer tokens: create, (dis)able, password, point,
revoke."""

from __future__ import annotations

from flask import Response, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm

from accounts import service as accounts_service
from accounts.auth import page_roles
from accounts.models import ADMIN
from admin import bp
from admin.forms import AccountForm, AssignForm, PasswordForm
from admin.pages import actor, done, failed, point_choices
from common.errors import DomainError
from slots import points as slots_points


@bp.route("/accounts", methods=["GET", "POST"])
@page_roles(ADMIN)
def accounts():
    """Every account and bearer token; a form to create an account."""
    form = AccountForm()
    form.point.choices = point_choices(blank=True)
    if form.validate_on_submit():
        try:
            point = slots_points.get_point(form.point.data) if form.point.data else None
            accounts_service.admin_create_user(
                form.email.data, form.role.data, form.password.data, point, actor()
            )
        except DomainError as exc:
            failed(exc)
        else:
            done(_("Account saved."))
            return redirect(url_for("admin.accounts"))
    return render_template(
        "admin/accounts.html",
        users=accounts_service.list_users(),
        tokens=accounts_service.list_tokens(),
        form=form,
        action=FlaskForm(),
        password_form=PasswordForm(),
        assign_form=AssignForm(),
        point_choices=point_choices(blank=True),
        tz=current_app.config["DEFAULT_TIMEZONE"],
    )


def _account_action(user_id: int, action) -> Response:
    if FlaskForm().validate_on_submit():
        try:
            user = accounts_service.get_user(user_id)
            action(user)
        except DomainError as exc:
            failed(exc)
        else:
            done(_("Account saved."))
    return redirect(url_for("admin.accounts"))


@bp.post("/accounts/<int:user_id>/active")
@page_roles(ADMIN)
def account_active(user_id: int):
    """Disable (``active=0``) or enable (``active=1``) an account."""
    active = request.form.get("active") == "1"
    return _account_action(
        user_id, lambda user: accounts_service.set_user_active(user, active, actor())
    )


@bp.post("/accounts/<int:user_id>/password")
@page_roles(ADMIN)
def account_password(user_id: int):
    """Set a new password for an account."""
    password = request.form.get("password", "")
    return _account_action(
        user_id, lambda user: accounts_service.reset_password(user, password, actor())
    )


@bp.post("/accounts/<int:user_id>/point")
@page_roles(ADMIN)
def account_point(user_id: int):
    """Assign an account to a market point."""
    code = request.form.get("point", "")

    def assign(user):
        point = slots_points.get_point(code) if code else None
        accounts_service.assign_point(user, point, actor())

    return _account_action(user_id, assign)


@bp.post("/tokens/<int:token_id>/revoke")
@page_roles(ADMIN)
def token_revoke(token_id: int):
    """Revoke a bearer token: the next request with it gets 401."""
    if FlaskForm().validate_on_submit():
        try:
            accounts_service.revoke_token_id(token_id, actor())
        except DomainError as exc:
            failed(exc)
        else:
            done(_("Token revoked."))
    return redirect(url_for("admin.accounts"))

"""``flask users ...``: staff, supervisor and admin accounts and their bearer tokens,
for operators' scripts. The same services as the admin pages, audited with the actor
``cli``; each command is one transaction (``common.cli.CommandGroup``)."""

from __future__ import annotations

from collections.abc import Callable

import click
from sqlalchemy import select

from accounts.models import User
from common.audit import CLI, record
from common.cli import CommandGroup, fail
from common.errors import DomainError
from extensions import db

users_cli = CommandGroup("users", help="Manage staff, supervisor and admin accounts.")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["staff", "supervisor", "admin"]), required=True)
@click.option("--point", "point_code", help="Market point code (required for staff).")
@click.option("--password", required=True, help="At least 8 characters.")
def users_create(email, role, point_code, password):
    """Create an account (or update its role, point and password)."""
    from accounts.service import admin_create_user
    from slots.points import get_market_point

    try:
        point = get_market_point(point_code) if point_code else None
        user = admin_create_user(email, role, password, point, CLI, update=True)
    except DomainError as exc:
        fail(exc)
    where = f" at {user.market_point.code}" if user.market_point else ""
    click.echo(f"{user.email}: {user.role}{where}")


@users_cli.command("token")
@click.argument("email")
@click.option("--name", default="cli", help="A label for the device or script.")
def users_token(email, name):
    """Issue a bearer token for EMAIL; the token is the last line printed."""
    from accounts.service import issue_token

    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.active:
        raise click.ClickException(f"no active account {email}")
    token = issue_token(user, name)
    record(CLI, "token.issue", "account", user.id, {}, {"user": user.email, "label": name})
    click.echo(f"Bearer token for {user.email} ({user.role}), shown once:")
    click.echo(token)


@users_cli.command("disable")
@click.argument("email")
def users_disable(email):
    """Disable an account: no sign-in, its tokens refused at once."""
    _user_action(email, lambda user, s: s.set_user_active(user, False, CLI), "disabled")


@users_cli.command("enable")
@click.argument("email")
def users_enable(email):
    """Enable a disabled account."""
    _user_action(email, lambda user, s: s.set_user_active(user, True, CLI), "enabled")


@users_cli.command("password")
@click.argument("email")
@click.option("--password", required=True, help="At least 8 characters.")
def users_password(email, password):
    """Set a new password for an account."""
    _user_action(email, lambda user, s: s.reset_password(user, password, CLI), "password changed")


@users_cli.command("tokens")
@click.argument("email", required=False)
def users_tokens(email):
    """List bearer tokens (id, account, label, created, revoked)."""
    from accounts import service

    user = _find_user(email) if email else None
    for token in service.list_tokens(user):
        revoked = token.revoked_at.isoformat() if token.revoked_at else "active"
        click.echo(
            f"{token.id} {token.user.email} {token.name!r} {token.created_at.isoformat()} {revoked}"
        )


@users_cli.command("revoke-token")
@click.argument("token_id", type=int)
def users_revoke_token(token_id):
    """Revoke a bearer token by its id: the next request with it gets 401."""
    from accounts import service

    try:
        service.revoke_token_id(token_id, CLI)
    except DomainError as exc:
        fail(exc)
    click.echo(f"token {token_id}: revoked")


def _find_user(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"no account {email}")
    return user


def _user_action(email: str, action: Callable, done: str) -> None:
    """Apply ``action(user, accounts.service)`` to the account EMAIL; echo ``done``."""
    from accounts import service

    user = _find_user(email)
    try:
        action(user, service)
    except DomainError as exc:
        fail(exc)
    click.echo(f"{user.email}: {done}")

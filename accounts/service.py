"""Accounts: create, authenticate, issue and resolve bearer tokens; administer them."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import joinedload
from werkzeug.security import check_password_hash, generate_password_hash

from accounts.errors import InvalidAccount
from accounts.models import ROLES, STAFF, ApiToken, User
from common.audit import Actor, AuditEntry, record
from common.timeutil import utcnow
from extensions import db
from slots.models import MarketPoint

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
MIN_PASSWORD_LENGTH = 8


def create_user(email: str, role: str, password: str, point: MarketPoint | None = None) -> User:
    """Create an account, or update the role, point and password of an existing one.

    Args: email (case-insensitive identity); role staff|supervisor|admin; password
      of at least 8 characters (stored as a salted scrypt hash); point, required for
      staff, who may only act there.
    Returns: the User (flushed).
    Raises: InvalidAccount for a malformed email, unknown role, short password, or
      staff without a point.
    """
    email = (email or "").strip().lower()
    if not _EMAIL.fullmatch(email) or len(email) > 254:
        raise InvalidAccount("Email address is not valid.")
    if role not in ROLES:
        raise InvalidAccount(f"Role must be one of {', '.join(ROLES)}.")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidAccount(f"Password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if role == STAFF and point is None:
        raise InvalidAccount("Staff accounts need a market point (--point CODE).")
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email)
        db.session.add(user)
    user.role = role
    user.market_point = point
    user.password_hash = generate_password_hash(password)
    user.active = True
    db.session.flush()
    return user


def authenticate(email: str, password: str) -> User | None:
    """Return the active user with this email and password, else None.

    A password check runs even for unknown emails so timing does not reveal accounts.
    """
    user = db.session.scalar(select(User).where(User.email == (email or "").strip().lower()))
    if user is None:
        check_password_hash(_dummy_hash(), password or "")
        return None
    if not user.active or not check_password_hash(user.password_hash, password or ""):
        return None
    return user


def record_refused_sign_in(
    email: str, remote_addr: str, limit: str, now: datetime | None = None
) -> AuditEntry:
    """Audit a sign-in refused by the back-off (issue 14 item 1).

    Args: email, as typed (folded like ``authenticate``; kept, up to 254 characters,
      even for an unknown account: that is what was tried); remote_addr, the client's
      address; limit, the budget that refused it (e.g. ``5 per 1 minute``); now, UTC.
    Returns: the AuditEntry ``account.sign_in_limited`` (added, not committed), its
      target the account's id ("" when no account has that e-mail), its point the
      staff member's, so a supervisor filtering by point sees attacks on their gate.
    """
    address = (email or "").strip().lower()[:254]
    user = db.session.scalar(select(User).where(User.email == address)) if address else None
    return record(
        Actor(None, "anonymous", remote_addr),
        "account.sign_in_limited",
        "account",
        user.id if user is not None else "",
        {},
        {"email": address, "limit": limit},
        user.market_point_id if user is not None else None,
        now,
    )


@cache
def _dummy_hash() -> str:
    return generate_password_hash("not-a-real-password")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: User, name: str = "") -> str:
    """Create a bearer token for ``user`` and return it (shown once; only a hash is kept).

    Returns: ``antri_`` followed by 43 URL-safe characters (256 random bits).
    """
    token = "antri_" + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user=user, token_hash=_token_hash(token), name=name))
    db.session.flush()
    return token


def user_for_token(token: str) -> User | None:
    """Return the active user owning an unrevoked bearer ``token``, else None."""
    if not token or len(token) > 200:
        return None
    row = db.session.scalar(
        select(ApiToken)
        .where(ApiToken.token_hash == _token_hash(token), ApiToken.revoked_at.is_(None))
        .options(joinedload(ApiToken.user).joinedload(User.market_point))  # one query
    )
    if row is None or not row.user.active:
        return None
    return row.user


def revoke_token(token: str) -> bool:
    """Revoke a bearer token; True when one was revoked."""
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    db.session.flush()
    return True


# Administration (issue 8): every change is audited in its own transaction ----------


def _account_values(user: User) -> dict:
    return {
        "email": user.email,
        "role": user.role,
        "market_point": user.market_point.code if user.market_point else None,
        "active": user.active,
    }


def get_user(user_id: int) -> User:
    """Return account ``user_id``. Raises InvalidAccount (404) when there is none."""
    user = (
        db.session.get(User, user_id) if isinstance(user_id, int) and 0 < user_id < 2**31 else None
    )
    if user is None:
        raise InvalidAccount("No such account.", status=404)
    return user


def list_users() -> list[User]:
    """Every account, by role then e-mail."""
    return list(db.session.scalars(select(User).order_by(User.role, User.email)))


def admin_create_user(
    email: str,
    role: str,
    password: str,
    point: MarketPoint | None,
    actor: Actor,
    update: bool = False,
) -> User:
    """Create an account as an admin (see ``create_user``); audited, the password never
    recorded. An existing e-mail is refused (InvalidAccount, 409 ``account_exists``)
    unless ``update`` (the CLI's create-or-update for operators' scripts)."""
    existing = db.session.scalar(select(User).where(User.email == (email or "").strip().lower()))
    if existing is not None and not update:
        raise InvalidAccount(
            "An account with this e-mail exists: change it in the list instead.",
            code="account_exists",
            status=409,
        )
    before = _account_values(existing) if existing else {}
    user = create_user(email, role, password, point)
    record(
        actor,
        "account.create" if not before else "account.update",
        "account",
        user.id,
        before,
        _account_values(user),
    )
    return user


def set_user_active(user: User, active: bool, actor: Actor) -> User:
    """Disable (no sign-in, every bearer token refused at once) or enable an account.
    Raises InvalidAccount when an admin would disable their own account."""
    if not active and actor.id == user.id:
        raise InvalidAccount("You cannot disable your own account.")
    if user.active != active:
        record(
            actor,
            "account.enable" if active else "account.disable",
            "account",
            user.id,
            {"active": user.active},
            {"active": active},
        )
        user.active = active
    return user


def assign_point(user: User, point: MarketPoint | None, actor: Actor) -> User:
    """Assign an account to a market point (staff must have one). Raises InvalidAccount."""
    if user.role == STAFF and point is None:
        raise InvalidAccount("Staff accounts need a market point (--point CODE).")
    before = user.market_point.code if user.market_point else None
    after = point.code if point else None
    if before != after:
        record(
            actor,
            "account.point",
            "account",
            user.id,
            {"market_point": before},
            {"market_point": after},
        )
        user.market_point = point
    return user


def reset_password(user: User, password: str, actor: Actor) -> User:
    """Set a new password (at least 8 characters). Raises InvalidAccount. The audit row
    says that it changed, never what to."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidAccount(f"Password must have at least {MIN_PASSWORD_LENGTH} characters.")
    user.password_hash = generate_password_hash(password)
    record(actor, "account.password", "account", user.id, {}, {"password": "changed"})
    return user


def list_tokens(user: User | None = None) -> list[ApiToken]:
    """Bearer tokens (newest first), of one account or of all; the secret is not kept,
    only its hash, so the list shows names and dates."""
    query = select(ApiToken).order_by(ApiToken.id.desc())
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return list(db.session.scalars(query))


def revoke_token_id(token_id: int, actor: Actor) -> ApiToken:
    """Revoke a bearer token by its id: the next request with it gets 401.
    Raises InvalidAccount (404) for an unknown id. Revoking twice changes nothing."""
    row = (
        db.session.get(ApiToken, token_id)
        if isinstance(token_id, int) and 0 < token_id < 2**31
        else None
    )
    if row is None:
        raise InvalidAccount("No such token.", status=404)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record(
            actor,
            "token.revoke",
            "api_token",
            row.id,
            {"revoked_at": None},
            {"revoked_at": row.revoked_at, "user": row.user.email},
        )
    return row

"""Accounts: create, authenticate, issue and resolve bearer tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from functools import cache

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from accounts.errors import InvalidAccount
from accounts.models import ROLES, STAFF, ApiToken, User
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
        select(ApiToken).where(
            ApiToken.token_hash == _token_hash(token), ApiToken.revoked_at.is_(None)
        )
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

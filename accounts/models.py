"""Accounts and their API tokens."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.timeutil import UTCDateTime, utcnow
from extensions import db
from slots.models import MarketPoint

STAFF = "staff"
SUPERVISOR = "supervisor"
ADMIN = "admin"
ROLES = (STAFF, SUPERVISOR, ADMIN)


class User(UserMixin, db.Model):
    """A person who works the system; staff belong to exactly one market point."""

    __tablename__ = "user_account"
    __table_args__ = (
        CheckConstraint("role IN ('staff','supervisor','admin')", name="role_known"),
        CheckConstraint("role <> 'staff' OR market_point_id IS NOT NULL", name="staff_has_point"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    market_point_id: Mapped[int | None] = mapped_column(ForeignKey("market_point.id"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    market_point: Mapped[MarketPoint | None] = relationship()

    @property
    def is_active(self) -> bool:  # Flask-Login refuses disabled accounts
        return self.active

    def get_id(self) -> str:
        """The session's id of this account: ``<id>:<key>``, where the key is an HMAC of
        the password hash, so setting a new password ends every session signed in
        with the old one (``accounts.auth`` checks it)."""
        return f"{self.id}:{self.session_key()}"

    def session_key(self) -> str:
        """16 hex characters derived from the password hash and SECRET_KEY."""
        from flask import current_app

        secret = current_app.config["SECRET_KEY"].encode()
        return hmac.new(secret, self.password_hash.encode(), hashlib.sha256).hexdigest()[:16]

    def can_act_at(self, point: MarketPoint) -> bool:
        """True when this account may scan at ``point`` (staff: only their own)."""
        return self.role in (SUPERVISOR, ADMIN) or self.market_point_id == point.id


class ApiToken(db.Model):
    """A bearer token of a user (a scanner device, a script); only its hash is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()

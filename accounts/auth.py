"""Who is asking: bearer tokens for the API, login sessions for pages, role checks."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from flask import current_app, g, request
from flask_login import current_user, login_required

from accounts.errors import Unauthorized, WrongRole
from accounts.models import User
from accounts.service import user_for_token
from common.errors import Forbidden
from extensions import csrf, db, login_manager


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    """The signed-in account of a session id ``<id>:<key>`` (see ``User.get_id``), or
    None when it is unknown, disabled, or its password changed since sign-in."""
    user_id, _, key = session_id.partition(":")
    user = db.session.get(User, int(user_id)) if user_id.isdigit() and len(user_id) < 10 else None
    if user is None or not user.active or not hmac.compare_digest(key, user.session_key()):
        return None
    return user


def bearer_user() -> User:
    """Return the user of the request's ``Authorization: Bearer`` token.

    Raises: Unauthorized (401) when the header is missing, malformed or the token is
      unknown, revoked or belongs to a disabled account.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    user = user_for_token(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise Unauthorized()
    return user


def api_roles(*roles: str) -> Callable:
    """Decorate an API view: require a bearer token whose user has one of ``roles``.

    The user is put in ``g.api_user``. Raises Unauthorized (401) or WrongRole (403).
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            user = bearer_user()
            if user.role not in roles:
                raise WrongRole()
            g.api_user = user
            return view(*args, **kwargs)

        return wrapped

    return decorator


def page_roles(*roles: str) -> Callable:
    """Decorate a page view: require a logged-in user with one of ``roles``.

    Anonymous visitors go to the login page; other roles get 403.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                raise Forbidden()
            return view(*args, **kwargs)

        return wrapped

    return decorator


def api_or_page_roles(*roles: str) -> Callable:
    """Decorate an API view that pages call too: a bearer token when the request has
    an ``Authorization`` header, else the login session; the user needs one of ``roles``.

    The user is put in ``g.api_user``. Raises Unauthorized (401) without either,
    WrongRole (403) for another role. A session-authenticated POST (the gate page's
    scans) must carry the page's CSRF token in ``X-CSRFToken``, else CSRFError (400):
    the API blueprint is exempt from the app-wide check because bearer tokens need none.
    """

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            if "Authorization" in request.headers or not current_user.is_authenticated:
                user = bearer_user()
            else:
                user = current_user._get_current_object()
                if request.method not in ("GET", "HEAD", "OPTIONS") and current_app.config.get(
                    "WTF_CSRF_ENABLED", True
                ):
                    csrf.protect()
            if user.role not in roles:
                raise WrongRole()
            g.api_user = user
            return view(*args, **kwargs)

        return wrapped

    return decorator

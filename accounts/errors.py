"""Account errors."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from common.errors import DomainError, Forbidden, ValidationError


class Unauthorized(DomainError):
    """No valid credentials came with the request."""

    code = "unauthorized"
    status = 401
    default_message = _l("Sign in or send a valid bearer token.")


class WrongRole(Forbidden):
    """The account's role may not use this."""

    code = "forbidden"
    default_message = _l("Your account may not do this.")


class InvalidAccount(ValidationError):
    """An account cannot be created as asked (bad email, role, point or password)."""

    code = "invalid_account"
    default_message = _l("The account details are not valid.")

"""Ticket verification errors; ``code`` is the reason a gate or offline scanner reports."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from common.errors import DomainError


class TicketError(DomainError):
    """A ticket token was refused before any booking was looked up."""

    code = "invalid_format"
    status = 422
    default_message = _l("This is not an Antri ticket.")


class InvalidFormat(TicketError):
    """The text is not a well-formed token of a known version."""

    code = "invalid_format"
    default_message = _l("This is not an Antri ticket.")


class UnknownKey(TicketError):
    """The token names a key id this server never published."""

    code = "unknown_key"
    default_message = _l("This ticket was signed with an unknown key.")


class InvalidSignature(TicketError):
    """The signature does not match: the ticket was altered or forged."""

    code = "invalid_signature"
    default_message = _l("This ticket is forged or damaged (signature does not match).")


class KeysUnavailable(DomainError):
    """The ticket keys cannot be read (a damaged or missing key file): an operator
    must fix TICKET_KEY_DIR or TICKET_PRIVATE_KEY; nothing is signed meanwhile."""

    code = "ticket_keys_unavailable"
    status = 503
    default_message = _l("Tickets cannot be issued or checked right now. Please try again later.")

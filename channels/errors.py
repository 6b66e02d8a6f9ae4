"""The phone channels' refusals of a gateway's request (issue 17)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from common.errors import DomainError


class ChannelNotConfigured(DomainError):
    """The channel's secret is not set: its endpoint takes nothing (never unsigned input)."""

    code = "channel_not_configured"
    status = 503
    default_message = _l("This channel is not configured on this server.")


class BadSignature(DomainError):
    """The request's signature (or the USSD callback's key) is missing or wrong."""

    code = "invalid_signature"
    status = 403
    default_message = _l("The request's signature is missing or wrong.")


class BadVerifyToken(DomainError):
    """A WhatsApp webhook verification with the wrong verify token or mode."""

    code = "invalid_verify_token"
    status = 403
    default_message = _l("The verify token is wrong.")


class EntryNotCancellable(DomainError):
    """BATAL with a ballot entry's code (issue 16): an entry stays in the draw; a won
    booking is cancelled by its own booking code."""

    code = "entry_not_cancellable"
    status = 409
    default_message = _l(
        "A ballot entry cannot be cancelled. If you win, cancel the booking with its code."
    )

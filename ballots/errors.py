"""Domain errors of ballots (issue 16): each has a stable code and a plain message."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from common.errors import DomainError, NotFound, ValidationError


class BallotNotFound(NotFound):
    """No ballot has this id."""

    code = "ballot_not_found"
    default_message = _l("This ballot does not exist.")


class EntryNotFound(NotFound):
    """No entry of this ballot matches this entry code and phone (one answer for both)."""

    code = "entry_not_found"
    default_message = _l("No entry matches this entry code and phone number.")


class InvalidBallot(ValidationError):
    """A ballot's window or date is impossible (``fault`` says which)."""

    code = "invalid_ballot"
    default_message = _l("The ballot's window is not valid.")


class InvalidPreferences(ValidationError):
    """The preferred slots are not one to three distinct slots of the ballot's day."""

    code = "invalid_preferences"
    default_message = _l("Choose one to three different slots of the ballot's day.")


class SlotsHaveBookings(DomainError):
    """The day's slots already hold bookings: a ballot cannot take them over."""

    code = "slots_have_bookings"
    status = 409
    default_message = _l("The slots of this day already hold bookings; no ballot can take them.")


class NoSlotsForBallot(DomainError):
    """The point has no open slot on that day to ballot."""

    code = "no_slots"
    status = 409
    default_message = _l("This market point has no open slots on that day.")


class BallotExists(DomainError):
    """The point-day has a ballot already."""

    code = "ballot_exists"
    status = 409
    default_message = _l("This market point already has a ballot on that day.")


class BallotNotOpen(DomainError):
    """The entry window is not open (not yet, or closed)."""

    code = "ballot_not_open"
    status = 409
    default_message = _l("This ballot is not open for entries now.")


class AlreadyEntered(DomainError):
    """The NIK (or, where the point limits households, the family card) has entered."""

    code = "already_entered"
    status = 409
    default_message = _l("This NIK (or family card) has already entered this ballot.")


class BallotNotClosed(DomainError):
    """The draw (or the frozen list) was asked for before the entry window closed."""

    code = "ballot_not_closed"
    status = 409
    default_message = _l("The ballot's entry window has not closed yet.")

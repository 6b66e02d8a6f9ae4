"""Gate refusal reasons: each a code and a plain message for staff at the gate."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from common.errors import DomainError

# Reason code -> message. The message may be formatted with the scan's details.
REFUSALS = {
    "invalid_format": _l("Not an Antri ticket. Ask for the QR code or booking code."),
    "unknown_key": _l("Ticket signed with an unknown key. Do not admit."),
    "invalid_signature": _l("Forged or altered ticket. Do not admit."),
    "unknown_ticket": _l("No booking with this ticket or code."),
    "wrong_point": _l("This booking is for another market point: %(point)s."),
    "cancelled": _l("This booking was cancelled."),
    "no_show": _l("This booking was marked as a no-show."),
    "already_checked_in": _l("Already checked in at %(time)s by %(by)s."),
    "not_today": _l("This booking is for another day: %(when)s."),
    "too_early": _l("Too early: arrive at %(arrive)s. Check-in opens at %(time)s."),
    "too_late": _l("Too late. The slot ended at %(time)s."),
    "point_full": _l(
        "Valid ticket, but the point is full (%(inside)d of %(limit)d inside). "
        "Ask the resident to wait and scan again when someone leaves."
    ),
    "not_checked_in": _l("This ticket was not checked in, so it cannot check out."),
    "already_checked_out": _l("This visit has already checked out."),
    "offline": _l("Refused by the gate while it was offline."),
}


# Short names of the conflicts an offline merge records (the refusal it met), for the
# supervisor's list.
CONFLICT_LABELS = {
    "cancelled": _l("Admitted offline, but the booking was cancelled"),
    "already_checked_in": _l("Admitted offline, but already checked in at another gate"),
    "no_show": _l("Admitted offline, but the booking was a no-show"),
    "not_today": _l("Admitted offline on the wrong day"),
    "too_early": _l("Admitted offline too early"),
    "too_late": _l("Admitted offline too late"),
    "wrong_point": _l("Admitted offline at the wrong market point"),
    "invalid_signature": _l("Admitted offline with a forged ticket"),
    "invalid_format": _l("Admitted offline with something that is not a ticket"),
    "unknown_key": _l("Admitted offline with a ticket from an unknown key"),
    "unknown_ticket": _l("Admitted offline with an unknown ticket"),
}


class NonceReused(DomainError):
    """A scan's nonce was used before, by this account and device, for another request."""

    code = "nonce_reused"
    status = 409
    default_message = _l("This scan id was already used for another scan. Scan again.")


class NotCheckedIn(DomainError):
    """Only a booking that is checked in now can have its check-in undone."""

    code = "not_checked_in"
    status = 409
    default_message = _l("This booking is not checked in, so there is nothing to undo.")

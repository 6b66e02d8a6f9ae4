"""The words pages show for stored codes: booking, waiting-list and message statuses,
message kinds and account roles (issue 14 item 12).

One mapping, used by every page (the ``label`` Jinja filter) and form (the role choice),
so an Indonesian page never shows ``checked_in`` or ``supervisor``. The keys are the
values stored in the database (``slots.models``, ``accounts.models``); ``common`` imports
no feature, so they are spelled here and a test checks they cover every stored value.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

LABELS = {
    # ballot statuses (issue 16; ballots.models)
    "scheduled": _l("Not open yet"),
    "open": _l("Open for entries"),
    "drawn": _l("Drawn"),
    "closed": _l("Entries closed"),
    # booking statuses (slots.models.BOOKING_STATUSES)
    "confirmed": _l("Confirmed"),
    "checked_in": _l("Checked in"),
    "checked_out": _l("Visit finished"),
    "cancelled": _l("Cancelled"),
    "no_show": _l("No-show"),
    # waiting-list entries (slots.models.WAITING ...)
    "waiting": _l("Waiting"),
    "promoted": _l("Got a place"),
    "left": _l("Left the list"),
    "skipped": _l("Skipped"),
    "expired": _l("Expired"),
    # booking channels (slots.models.BOOKING_CHANNELS, issue 17)
    "web": _l("Web"),
    "assisted": _l("Assisted desk"),
    "sms": _l("SMS"),
    "ussd": _l("USSD"),
    "whatsapp": _l("WhatsApp"),
    "ballot": _l("Ballot draw"),
    # messages to residents (slots.models.NOTICE_*) and their kinds (NOTICE_KINDS)
    "pending": _l("Waiting to send"),
    "sending": _l("Sending"),
    "sent": _l("Sent"),
    "failed": _l("Failed"),
    "void": _l("Not sent"),
    "confirmation": _l("Booking confirmed"),
    "reminder": _l("Reminder"),
    "cancellation": _l("Booking cancelled"),
    "promotion": _l("Place from the waiting list"),
    "slot_closed": _l("Slot closed"),
    "slot_moved": _l("Booking moved"),
    "proxy_set": _l("Proxy named"),
    "proxy_removed": _l("Proxy removed"),
    # account roles (accounts.models)
    "staff": _l("Gate staff"),
    "supervisor": _l("Supervisor"),
    "admin": _l("Administrator"),
}


def label(code: str | None) -> str:
    """The translated word for a stored status, kind or role ``code``, in the request's
    language; an unknown code is shown as it is (never an error, never empty)."""
    if code is None:
        return ""
    word = LABELS.get(code)
    return str(word) if word is not None else code

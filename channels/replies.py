"""Every text a resident reads on SMS, USSD and WhatsApp (issue 17), in their language:
Bahasa Indonesia first, English after ``EN`` (Flask-Babel; the source strings are
English, ``translations/id`` has the Indonesian).

Call these inside ``speaking(language)``. Texts are short: a USSD screen holds 182
characters (``channels.gsm7``), an SMS segment 160; ``fit_list`` trims a list's labels
until its screen fits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date, datetime

from flask_babel import force_locale
from flask_babel import gettext as _

from channels.gsm7 import USSD_SCREEN_MAX, to_gsm7
from common.errors import DomainError
from common.labels import label
from common.timeutil import clock_text, day_text

# Refusals whose own message (``DomainError.message``, translated) is the reply: the
# booking services' codes a resident can meet on a phone channel. Any other code (a
# ballot's, issue 16, or one added later) gets ``generic_refusal``.
KNOWN_REFUSALS = frozenset(
    {
        "invalid_name",
        "invalid_nik",
        "invalid_kk",
        "slot_not_found",
        "market_point_not_found",
        "booking_not_found",
        "waiting_entry_not_found",
        "slot_full",
        "slot_closed",
        "limit_reached",
        "household_limit_reached",
        "cancel_not_allowed",
        "already_waiting",
        "already_booked",
        "sold_out",
        # issue 16: a day released by a ballot
        "ballot_not_open",
        "already_entered",
        "ballot_running",
        "entry_not_cancellable",
        "not_waiting",
        "slot_not_full",
    }
)


@contextlib.contextmanager
def speaking(language: str) -> Iterator[None]:
    """Render the texts of the block in ``language`` ("id" or "en")."""
    with force_locale(language if language in ("id", "en") else "id"):
        yield


def fit_list(header: str, labels: list[str], footer: str = "", limit: int = USSD_SCREEN_MAX) -> str:
    """One screen: ``header``, then ``labels`` numbered from 1, then ``footer``; each
    label cut shorter (with ``.``) until the screen is at most ``limit`` characters.
    Returns the screen in the GSM 7-bit alphabet."""
    width = max((len(text) for text in labels), default=0)
    while True:
        lines = [header] + [f"{n} {text[:width]}" for n, text in enumerate(labels, 1)]
        screen = to_gsm7("\n".join(lines + ([footer] if footer else [])))
        if len(screen) <= limit or width <= 4:
            return screen[:limit]
        width -= 1


def fit(text: str, limit: int = USSD_SCREEN_MAX) -> str:
    """``text`` in the GSM 7-bit alphabet, cut to ``limit`` characters."""
    return to_gsm7(text)[:limit]


def day_label(day: date) -> str:
    """A day on a phone screen: ``Kam, 3 Des`` / ``Thu 3 Dec``."""
    return day_text(day, short=True, locale=_current())


def _current() -> str:
    from flask_babel import get_locale

    return str(get_locale() or "id")


# The main menu and the booking path (USSD and the WhatsApp numbered menu) ----------


def menu() -> str:
    """The main menu (issue 17 §3: 1 book, 2 check, 3 cancel)."""
    return _("Antri market queue\n1 Book\n2 Check ticket\n3 Cancel")


def ask_area() -> str:
    """Step 1 of booking: the kecamatan or market typed."""
    return _("Type your kecamatan or market name:")


def no_points(query: str) -> str:
    """No active market point matches what was typed."""
    return _("No market found for %(query)s. Type another name:", query=query[:40])


def pick_point() -> str:
    """Header of the list of market points."""
    return _("Choose a market:")


def pick_day() -> str:
    """Header of the list of days with open slots."""
    return _("Choose a day:")


def no_days(point: str) -> str:
    """The point has no bookable slot in the days shown."""
    return _("%(point)s has no open slots in the next days.", point=point)


def pick_time() -> str:
    """Header of the list of slots (start time and places left)."""
    return _("Choose a time (places left):")


def more() -> str:
    """The choice that shows the next page of a list."""
    return _("0 More")


def full() -> str:
    """A slot without places left (booking it joins its waiting list)."""
    return _("full")


def sold_out() -> str:
    """A slot of a sold-out day (booking it joins its waiting list)."""
    return _("sold out")


def ask_nik() -> str:
    """Asks for the NIK."""
    return _("Type your NIK (16 digits):")


def ask_name() -> str:
    """Asks for the name."""
    return _("Type your name as on your KTP:")


def confirm_booking(point: str, day: date, starts: datetime, tz: str, name: str, last4: str) -> str:
    """The last step of booking: what will be booked, 1 yes, 2 no."""
    return _(
        "Book %(point)s, %(day)s %(time)s for %(name)s (NIK ****%(last4)s)?\n1 Yes\n2 No",
        point=point[:40],
        day=day_label(day),
        time=clock_text(starts, tz),
        name=name[:30],
        last4=last4,
    )


def not_a_choice() -> str:
    """Prefix of a list shown again after a choice that is not on it."""
    return _("Choose a number from the list.")


def stopped() -> str:
    """The resident said no at a confirmation."""
    return _("Nothing was changed. Thank you.")


def booked(
    code: str, point: str, starts: datetime, arrive: datetime, tz: str, packages: int
) -> str:
    """A booking made: its code, the market, the day and time, when to arrive and the
    packages it reserved (issue 17 §2)."""
    text = _(
        "Booked. Code %(code)s. %(point)s, %(day)s %(time)s; arrive at %(arrive)s.",
        code=code,
        point=point[:40],
        day=day_label(starts.astimezone(_zone(tz)).date()),
        time=clock_text(starts, tz),
        arrive=clock_text(arrive, tz),
    )
    if packages:
        text += " " + _("Packages: %(count)d.", count=packages)
    return text + " " + _("Show the code at the gate.")


def waiting(code: str, position: int | None) -> str:
    """The slot was full: the resident joined its waiting list."""
    return _(
        "The slot is full. You are number %(position)s on its waiting list, code %(code)s. "
        "We send a message if a place frees up.",
        position=position or "-",
        code=code,
    )


def ask_code() -> str:
    """Asks for the booking code to look up."""
    return _("Type your booking code:")


def ask_cancel_code() -> str:
    """Asks for the booking code to cancel."""
    return _("Type the booking code to cancel:")


def booking_status(
    code: str, status: str, point: str, starts: datetime, arrive: datetime, tz: str
) -> str:
    """A booking looked up (CEK)."""
    return _(
        "Booking %(code)s: %(status)s. %(point)s, %(day)s %(time)s; arrive at %(arrive)s.",
        code=code,
        status=str(label(status)),
        point=point[:40],
        day=day_label(starts.astimezone(_zone(tz)).date()),
        time=clock_text(starts, tz),
        arrive=clock_text(arrive, tz),
    )


def waiting_status(
    code: str, status: str, point: str, starts: datetime, tz: str, position: int | None
) -> str:
    """A waiting-list entry looked up (CEK with its code)."""
    text = _(
        "Waiting list %(code)s: %(status)s. %(point)s, %(day)s %(time)s.",
        code=code,
        status=str(label(status)),
        point=point[:40],
        day=day_label(starts.astimezone(_zone(tz)).date()),
        time=clock_text(starts, tz),
    )
    if position:
        text += " " + _("You are number %(position)d.", position=position)
    return text


def confirm_cancel(code: str, point: str, starts: datetime, tz: str) -> str:
    """Asks before cancelling: 1 yes, 2 no."""
    return _(
        "Cancel booking %(code)s at %(point)s, %(day)s %(time)s?\n1 Yes\n2 No",
        code=code,
        point=point[:40],
        day=day_label(starts.astimezone(_zone(tz)).date()),
        time=clock_text(starts, tz),
    )


def cancelled(code: str) -> str:
    """A booking cancelled (BATAL, or menu 3)."""
    return _("Booking %(code)s is cancelled. Thank you for freeing the place.", code=code)


def left_waiting_list(code: str) -> str:
    """A waiting-list entry left (BATAL with its code)."""
    return _("You left waiting list %(code)s.", code=code)


def ballot_label() -> str:
    """A slot held by a ballot (issue 16), in a list of times: choosing it enters."""
    return _("ballot")


def entered_ballot(code: str, point: str, draw_at: datetime, tz: str) -> str:
    """The slot's day is released by a ballot: the resident entered it (issue 16)."""
    return _(
        "This day goes by ballot. You entered it: entry code %(code)s, %(point)s. "
        "Draw %(day)s %(time)s; send CEK %(code)s then.",
        code=code,
        point=point[:40],
        day=day_label(draw_at.astimezone(_zone(tz)).date()),
        time=clock_text(draw_at, tz),
    )


def ballot_status(
    code: str,
    status: str,
    draw_at: datetime,
    tz: str,
    booking_code: str | None,
    position: int | None,
) -> str:
    """A ballot entry looked up (CEK with its entry code): its outcome (issue 16)."""
    if status == "won" and booking_code:
        return _(
            "Ballot entry %(code)s won: booking %(booking)s. Send CEK %(booking)s.",
            code=code,
            booking=booking_code,
        )
    if status == "waiting":
        return _(
            "Ballot entry %(code)s: not drawn for a place; number %(position)s on the "
            "waiting list.",
            code=code,
            position=position or "-",
        )
    if status == "entered":
        return _(
            "Ballot entry %(code)s is in the draw at %(day)s %(time)s.",
            code=code,
            day=day_label(draw_at.astimezone(_zone(tz)).date()),
            time=clock_text(draw_at, tz),
        )
    return _("Ballot entry %(code)s was not drawn.", code=code)


# Keywords (SMS and WhatsApp) -------------------------------------------------------


def help_text() -> str:
    """The keyword help (BANTUAN), also the answer to anything not understood."""
    return _(
        "Antri: PASAR <kecamatan>; JADWAL <market code> [DD-MM]; "
        "DAFTAR <market code> <DD-MM> <HH:MM> <NIK> <name>; CEK <code>; BATAL <code>. "
        "EN: English, ID: Bahasa Indonesia."
    )


def whatsapp_menu() -> str:
    """WhatsApp's first answer: the numbered menu and the keywords."""
    return menu() + "\n" + _("Or send BANTUAN for the keywords.")


def points_found(lines: list[str]) -> str:
    """PASAR: up to five market points with their codes."""
    return _("Markets (code, name):") + " " + "; ".join(lines)


def usage_pasar() -> str:
    """PASAR without a place."""
    return _("Send PASAR and a kecamatan or market name, e.g. PASAR SENEN.")


def usage_jadwal() -> str:
    """JADWAL without a usable market code or day."""
    return _("Send JADWAL, a market code and a day, e.g. JADWAL JKT-001 04-12.")


def usage_daftar() -> str:
    """DAFTAR without its parts."""
    return _(
        "Send DAFTAR <market code> <DD-MM> <HH:MM> <NIK> <name>, "
        "e.g. DAFTAR JKT-001 04-12 08:00 3171044101900001 Siti Aminah."
    )


def usage_daftar_kk() -> str:
    """DAFTAR at a point with a household limit without both NIK and KK."""
    return _(
        "This market also asks for your family card (KK) number: send DAFTAR "
        "<market code> <DD-MM> <HH:MM> <NIK> <KK> <name>."
    )


def ask_kk() -> str:
    """Asks for the family card number (points with a household limit)."""
    return _("Type your family card (KK) number (16 digits):")


def usage_code(keyword: str) -> str:
    """CEK or BATAL without a code."""
    return _("Send %(keyword)s and your booking code, e.g. %(keyword)s ABCD-EFGH.", keyword=keyword)


def slots_of_day(point: str, day: date, lines: list[str]) -> str:
    """JADWAL: a point-day's slots with places left."""
    return _("%(point)s, %(day)s:", point=point[:40], day=day_label(day)) + " " + "; ".join(lines)


def no_slots(point: str, day: date) -> str:
    """JADWAL: no bookable slot on that day."""
    return _("%(point)s has no open slots on %(day)s.", point=point[:40], day=day_label(day))


def no_slot_at(point: str, day: date, clock: str) -> str:
    """DAFTAR: no slot starts at that time."""
    return _(
        "%(point)s has no slot at %(time)s on %(day)s. Send JADWAL to see the times.",
        point=point[:40],
        time=clock,
        day=day_label(day),
    )


def bad_day() -> str:
    """A day not written DD-MM."""
    return _("Write the day as DD-MM, e.g. 04-12.")


def bad_time() -> str:
    """A time not written HH:MM."""
    return _("Write the time as HH:MM, e.g. 08:00.")


def language_set() -> str:
    """The answer to EN (or ID) alone."""
    return _("Antri speaks English with you now. Send BANTUAN for help.")


# Refusals and limits -----------------------------------------------------------------


def refusal(exc: DomainError) -> str:
    """The reply to a refusal of the booking services: its own plain message for a
    code a resident can meet here (``KNOWN_REFUSALS``), a generic one for any other."""
    if exc.code in KNOWN_REFUSALS:
        return str(exc.message)
    return generic_refusal()


def faults(messages: list[str]) -> str:
    """The faults of typed details (NIK, name), each named in plain words."""
    return " ".join(messages)


def generic_refusal() -> str:
    """The reply to anything that went wrong that the resident cannot fix by typing."""
    return _("Sorry, this cannot be done now. Please try again later.")


def rate_limited() -> str:
    """Told once when a phone number sends more than its budget (issue 17 §5)."""
    return _("Too many messages from your number. Please wait a few minutes and try again.")


def bad_phone() -> str:
    """USSD from a number that cannot hold a booking (not an Indonesian mobile)."""
    return _("Antri takes bookings from Indonesian mobile numbers only.")


def _zone(tz: str):
    from common.timeutil import zone

    return zone(tz)

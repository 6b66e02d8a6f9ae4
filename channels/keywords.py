"""The keywords residents send by SMS and WhatsApp (issue 17 §2), case-insensitive:

- ``PASAR <kecamatan or name>``: up to five market points with their codes;
- ``JADWAL <market code> [DD-MM]``: a day's slots with places left (default: the
  first day with open slots);
- ``DAFTAR <market code> <DD-MM> <HH:MM> <NIK> <name>``: book (or join the waiting
  list of a full slot); the reply has the code, market, time, arrival and packages;
  at a point with a household limit ``<NIK> <KK> <name>`` (the family card, as on the
  web);
- ``CEK <code>``, ``BATAL <code>``: look a booking (or waiting-list entry) up, cancel it;
- ``BANTUAN``: the help; ``EN`` / ``ID`` switch the language (and may lead a keyword).

English words (MARKET, SLOTS, BOOK, CHECK, CANCEL, HELP) are the same keywords. The
sender's phone is the booking's phone and the proof of ownership for CEK and BATAL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from channels import actions, replies
from channels.conversation import Turn, booked_text, cancelled_text, found_text
from common.errors import DomainError
from common.timeutil import local_date
from slots.identity import field_faults

KEYWORDS = {
    "PASAR": "PASAR",
    "MARKET": "PASAR",
    "JADWAL": "JADWAL",
    "SLOTS": "JADWAL",
    "DAFTAR": "DAFTAR",
    "BOOK": "DAFTAR",
    "CEK": "CEK",
    "CHECK": "CEK",
    "BATAL": "BATAL",
    "CANCEL": "BATAL",
    "BANTUAN": "BANTUAN",
    "HELP": "BANTUAN",
}
LANGUAGES = {"EN": "en", "ID": "id"}

_DAY = re.compile(r"^(\d{1,2})[-/.](\d{1,2})$")
_CLOCK = re.compile(r"^(\d{1,2})[:.]?(\d{2})$")  # 07:00, 7.00, 0700
# DAFTAR's tail: the NIK (digits, maybe grouped by spaces, dots or dashes), then the name.
_NIK_THEN_NAME = re.compile(r"^([0-9][0-9 .\-]*[0-9])(?:\s+(.*))?$", re.S)


@dataclass(frozen=True)
class Command:
    """A parsed message: ``keyword`` (the Indonesian word, or "" for none), the rest
    of the text after it, and ``language`` when it began with EN or ID."""

    keyword: str
    rest: str
    language: str | None = None


def parse(text: str) -> Command:
    """Split a message into its keyword and the rest (``Command``); a message with no
    keyword has ``keyword`` "" and ``rest`` the whole text."""
    words = (text or "").strip().split(None, 1)
    language = None
    if words and words[0].upper() in LANGUAGES:
        language = LANGUAGES[words[0].upper()]
        words = words[1].strip().split(None, 1) if len(words) > 1 else []
    if not words:
        return Command("", "", language)
    keyword = KEYWORDS.get(words[0].upper().rstrip(".:,"), "")
    if not keyword:
        return Command("", " ".join(words), language)
    return Command(keyword, words[1].strip() if len(words) > 1 else "", language)


def respond(command: Command, turn: Turn) -> str:
    """The reply to a keyword ``command`` (not "": the caller answers that), in
    ``turn.language`` (call inside ``replies.speaking``).

    Never raises a DomainError: a refusal of the booking services is its plain reply
    (``replies.refusal``); raises only the database's OperationalError.
    """
    handler = _HANDLERS[command.keyword]
    try:
        return handler(command.rest, turn)
    except DomainError as exc:
        return replies.refusal(exc)


def _pasar(rest: str, turn: Turn) -> str:
    if not rest:
        return replies.usage_pasar()
    points = actions.find_points(rest)
    if not points:
        return replies.no_points(rest).split(". ")[0] + "."
    return replies.points_found([f"{p.code} {p.name} ({p.kecamatan})" for p in points])


def _day_of(text: str, today: date) -> date | None:
    """``DD-MM`` as the next such date from ``today`` (this year, or next); None when
    it is not a date."""
    match = _DAY.match(text)
    if not match:
        return None
    day, month = int(match.group(1)), int(match.group(2))
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            return None
        if candidate >= today:
            return candidate
    return None


def _jadwal(rest: str, turn: Turn) -> str:
    parts = rest.split()
    if not parts:
        return replies.usage_jadwal()
    point = actions.point_by_code(parts[0])
    if point is None:
        return replies.refusal(_point_not_found())
    today = local_date(turn.now, point.timezone)
    if len(parts) > 1:
        day = _day_of(parts[1], today)
        if day is None:
            return replies.bad_day()
    else:
        days = actions.open_days(point, turn.now, limit=1)
        if not days:
            return replies.no_days(point.name)
        day = days[0]
    choices = actions.day_slots(point, day, turn.now)
    if not choices:
        return replies.no_slots(point.name, day)
    from common.timeutil import clock_text

    lines = []
    for choice in choices:
        if choice.ballot:
            left = replies.ballot_label()
        elif choice.sold_out:
            left = replies.sold_out()
        elif choice.left == 0:
            left = replies.full()
        else:
            left = str(choice.left)
        lines.append(f"{clock_text(choice.starts_at, point.timezone)} {left}")
    return replies.slots_of_day(point.name, day, lines)


def _point_not_found() -> DomainError:
    from slots.errors import MarketPointNotFound

    return MarketPointNotFound()


def _daftar(rest: str, turn: Turn) -> str:
    parts = rest.split(None, 3)
    if len(parts) < 4:
        return replies.usage_daftar()
    code, day_text, clock, tail = parts
    point = actions.point_by_code(code)
    if point is None:
        return replies.refusal(_point_not_found())
    day = _day_of(day_text, local_date(turn.now, point.timezone))
    if day is None:
        return replies.bad_day()
    match = _CLOCK.match(clock)
    if not match:
        return replies.bad_time()
    clock = f"{int(match.group(1)):02d}:{match.group(2)}"
    found = _NIK_THEN_NAME.match(tail.strip())
    nik, name = (found.group(1), found.group(2) or "") if found else ("", tail)
    kk = ""
    if point.household_limit:
        # A household limit (as on the web) needs the family card: NIK, then KK.
        digits = re.sub(r"[^0-9]", "", nik)
        if len(digits) != 32:
            return replies.usage_daftar_kk()
        nik, kk = digits[:16], digits[16:]
    # Every faulty detail named at once, in plain words (never the NIK typed back).
    faults = field_faults(name, nik, turn.phone)
    if faults:
        return replies.faults([str(fault.message) for fault in faults.values()])
    slot = actions.slot_at(point, day, clock)
    if slot is None:
        return replies.no_slot_at(point.name, day, clock)
    result = actions.book_or_wait(
        turn.channel, slot.id, name, nik, turn.phone, turn.language, turn.now, kk=kk
    )
    return booked_text(result)


def _cek(rest: str, turn: Turn) -> str:
    if not rest:
        return replies.usage_code("CEK")
    return found_text(actions.look_up(rest, turn.phone))


def _batal(rest: str, turn: Turn) -> str:
    if not rest:
        return replies.usage_code("BATAL")
    return cancelled_text(actions.cancel(rest, turn.phone, turn.now))


def _bantuan(rest: str, turn: Turn) -> str:
    return replies.help_text()


_HANDLERS = {
    "PASAR": _pasar,
    "JADWAL": _jadwal,
    "DAFTAR": _daftar,
    "CEK": _cek,
    "BATAL": _batal,
    "BANTUAN": _bantuan,
}

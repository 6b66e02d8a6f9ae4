"""The conversation engine (issue 17 §1): where one phone stands on one channel, and
the numbered menu that USSD and WhatsApp walk.

State lives in the ``conversation`` table (never in a process's memory: any app host
takes the next message), keyed by (channel, phone), with a time-out
(CHANNEL_CONVERSATION_MINUTES) after which it starts again at the menu. A turn first
takes the row's lock (``open_conversation``: an upsert that bumps ``version``, the
first lock of the lock order, ``common.locking``), so two messages of one phone at
once are taken one after the other, each seeing the state the other left.

The menu (issue 17 §3): ``1`` book (kecamatan or market typed, market, day, time, NIK,
the family card at points with a household limit, name, confirmation), ``2`` check a
ticket, ``3`` cancel. ``advance`` takes one input and returns the next screen; a screen
that ends the conversation (``end``) sends it back to the menu. Input a step does not
expect gets that step's screen again, never an error text. Booking, look-up and cancel
go through ``channels.actions``, the web's services.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from channels import actions, replies
from channels.models import Conversation
from common.errors import DomainError
from common.locking import execute_locking
from common.timeutil import UTCDateTime
from extensions import db
from slots.errors import InvalidKK, InvalidName, InvalidNIK
from slots.identity import clean_name, validate_kk, validate_nik

# The menu's steps (``Conversation.state``).
MENU = "menu"
AREA = "area"
POINT = "point"
DAY = "day"
TIME = "time"
NIK = "nik"
KK = "kk"  # only at points with a household limit (as on the web)
NAME = "name"
CONFIRM = "confirm"
CHECK = "check"
CANCEL = "cancel"
CANCEL_CONFIRM = "cancel_confirm"

PAGE = 5  # slots on one screen of the time list


@dataclass(frozen=True)
class Turn:
    """One message being answered: the channel, the sender's E.164 phone, the instant
    (aware UTC) and the language the answer is in."""

    channel: str
    phone: str
    now: datetime
    language: str = "id"


@dataclass
class Screen:
    """What the resident reads next; ``end`` closes the conversation (USSD ``END``)."""

    text: str
    end: bool = False


@dataclass
class State:
    """A conversation's step and choices so far, as ``advance`` reads and leaves them."""

    step: str = MENU
    data: dict = field(default_factory=dict)


# Persistence --------------------------------------------------------------------------


@cache
def _upsert(dialect: str):
    """The upsert that takes a conversation's lock and returns its row (the ORM
    object): one statement and one round trip per turn; built once per dialect."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(Conversation)
        .values(
            channel=bindparam("channel"),
            phone=bindparam("phone"),
            state=MENU,
            data="{}",
            language="id",
            version=0,
            updated_at=bindparam("now", type_=UTCDateTime()),
            expires_at=bindparam("expires", type_=UTCDateTime()),
        )
        .on_conflict_do_update(
            index_elements=[Conversation.channel, Conversation.phone],
            set_={"version": Conversation.version + 1},
        )
        .returning(Conversation)
    )


def timeout() -> timedelta:
    """How long a conversation waits for the next message (CHANNEL_CONVERSATION_MINUTES)."""
    return timedelta(minutes=current_app.config["CHANNEL_CONVERSATION_MINUTES"])


def open_conversation(channel: str, phone: str, now: datetime) -> Conversation:
    """Return the conversation of ``phone`` (E.164) on ``channel``, made if new, its row
    locked for the rest of the transaction; one past its ``expires_at`` is back at the
    menu (its language kept). Raises: as ``common.locking.execute_locking``."""
    params = {"channel": channel, "phone": phone, "now": now, "expires": now + timeout()}
    stmt = _upsert(db.session.get_bind().dialect.name)
    # The upsert returns the whole row (no second query); populate_existing, so an
    # object of this row already in the session takes the values just locked.
    conversation = execute_locking(
        "conversation", stmt, params, autoflush=True, populate_existing=True
    ).scalar_one()
    if conversation.expires_at <= now:
        conversation.state, conversation.data = MENU, "{}"
    return conversation


def state_of(conversation: Conversation) -> State:
    """The conversation's step and choices."""
    try:
        data = json.loads(conversation.data or "{}")
    except ValueError:
        data = {}
    return State(conversation.state or MENU, data if isinstance(data, dict) else {})


def keep(conversation: Conversation, state: State, now: datetime) -> None:
    """Write ``state`` back to the conversation, waiting for the next message until
    ``now`` plus the time-out."""
    conversation.state = state.step
    conversation.data = json.dumps(state.data, separators=(",", ":"))
    conversation.updated_at = now
    conversation.expires_at = now + timeout()


def _fernet() -> Fernet:
    return _fernet_for(current_app.config["NIK_HASH_KEY"])


@lru_cache(maxsize=4)
def _fernet_for(nik_hash_key: str) -> Fernet:
    """The Fernet of a NIK_HASH_KEY, derived once per key (not on every turn)."""
    digest = hashlib.sha256(b"antri-conversation:" + nik_hash_key.encode())
    return Fernet(base64.urlsafe_b64encode(digest.digest()))


def seal(nik: str) -> str:
    """A NIK as a conversation keeps it between two messages: encrypted (Fernet, a key
    derived from NIK_HASH_KEY), never in clear in the database (DESIGN.md privacy)."""
    return _fernet().encrypt(nik.encode()).decode()


def unseal(token: str) -> str:
    """The NIK ``seal`` made; "" when the token does not open (a rotated key)."""
    try:
        return _fernet().decrypt((token or "").encode()).decode()
    except InvalidToken:
        return ""


# The menu -----------------------------------------------------------------------------


def start() -> tuple[Screen, State]:
    """The first screen: the main menu."""
    return Screen(replies.menu()), State()


def advance(state: State, entry: str, turn: Turn) -> tuple[Screen, State]:
    """Take one input ``entry`` at ``state`` and return the next screen and state.

    Call inside ``replies.speaking(turn.language)``. Writes through
    ``channels.actions`` on the last step of booking and cancelling. Never raises a
    DomainError: a refusal is the screen that ends the conversation; raises only the
    database's OperationalError (busy: the gateway asks again).
    """
    entry = (entry or "").strip()
    step = _STEPS.get(state.step, _menu)
    try:
        screen, after = step(state, entry, turn)
    except DomainError as exc:
        screen, after = Screen(replies.refusal(exc), end=True), State()
    if screen.end:
        after = State()
    return screen, after


def _choice(entry: str, count: int) -> int | None:
    """The 1-based number typed, if it is one of ``count`` choices."""
    return int(entry) if entry.isdigit() and 1 <= int(entry) <= count else None


def _menu(state: State, entry: str, turn: Turn):
    if entry == "1":
        return Screen(replies.ask_area()), State(AREA)
    if entry == "2":
        return Screen(replies.ask_code()), State(CHECK)
    if entry == "3":
        return Screen(replies.ask_cancel_code()), State(CANCEL)
    return Screen(replies.menu()), State()


def _area(state: State, entry: str, turn: Turn):
    if not entry:  # an empty choice (USSD ``1**``, a WhatsApp image): ask again
        return Screen(replies.ask_area()), state
    points = actions.find_points(entry)
    if not points:
        return Screen(replies.fit(replies.no_points(entry))), state
    data = {"points": [point.code for point in points]}
    return _points_screen(points), State(POINT, data)


def _points_screen(points, prefix: str = "") -> Screen:
    header = (prefix + " " if prefix else "") + replies.pick_point()
    return Screen(replies.fit_list(header, [point.name for point in points]))


def _point(state: State, entry: str, turn: Turn):
    codes = state.data.get("points", [])
    number = _choice(entry, len(codes))
    if number is None:  # the list again: the points as they are now
        points = [actions.point_by_code(code) for code in codes]
        return _points_screen([p for p in points if p], replies.not_a_choice()), state
    point = actions.point_by_code(codes[number - 1])  # the chosen one only
    if point is None:
        return Screen(replies.generic_refusal(), end=True), State()
    days = actions.open_days(point, turn.now)
    if not days:
        return Screen(replies.fit(replies.no_days(point.name)), end=True), State()
    # The point kept with the state: the later steps show and query by it, no look-up.
    ref = actions.PointRef(point.id, point.code, point.name, point.timezone)
    data = {"point": point.code, "ref": ref.as_data(), "days": [day.isoformat() for day in days]}
    return _days_screen(days), State(DAY, data)


def _chosen_point(data: dict) -> actions.PointRef | actions.MarketPoint | None:
    """The point the walk chose: as kept in the state (``_point``), or looked up by its
    code for a state kept before the point was (None when it is gone)."""
    return actions.PointRef.from_data(data.get("ref")) or actions.point_by_code(
        data.get("point", "")
    )


def _days_screen(days: list[date], prefix: str = "") -> Screen:
    header = (prefix + " " if prefix else "") + replies.pick_day()
    return Screen(replies.fit_list(header, [replies.day_label(day) for day in days]))


def _day(state: State, entry: str, turn: Turn):
    days = [date.fromisoformat(day) for day in state.data.get("days", [])]
    number = _choice(entry, len(days))
    if number is None:
        return _days_screen(days, replies.not_a_choice()), state
    point = _chosen_point(state.data)
    if point is None:
        return Screen(replies.generic_refusal(), end=True), State()
    day = days[number - 1]
    choices = actions.day_slots(point, day, turn.now)
    if not choices:
        return Screen(replies.fit(replies.no_slots(point.name, day)), end=True), State()
    data = {**state.data, "day": day.isoformat(), "page": 0, **_listed(choices)}
    return _times_screen(point, choices, 0), State(TIME, data)


def _listed(choices: list[actions.SlotChoice]) -> dict:
    """The slots a time list showed, as the state keeps them: ids and starts (UTC epoch
    seconds), so a choice from that list is taken as shown, without a query."""
    return {
        "slots": [choice.id for choice in choices],
        "starts": [int(choice.starts_at.timestamp()) for choice in choices],
    }


def _slot_label(choice: actions.SlotChoice, tz: str) -> str:
    from common.timeutil import clock_text

    if choice.ballot:
        left = replies.ballot_label()
    elif choice.sold_out:
        left = replies.sold_out()
    elif choice.left == 0:
        left = replies.full()
    else:
        left = str(choice.left)
    return f"{clock_text(choice.starts_at, tz)} ({left})"


def _times_screen(point, choices: list[actions.SlotChoice], page: int, prefix: str = "") -> Screen:
    shown = choices[page * PAGE : (page + 1) * PAGE]
    footer = replies.more() if len(choices) > (page + 1) * PAGE else ""
    header = (prefix + " " if prefix else "") + replies.pick_time()
    labels = [_slot_label(choice, point.timezone) for choice in shown]
    return Screen(replies.fit_list(header, labels, footer))


def _time(state: State, entry: str, turn: Turn):
    page = int(state.data.get("page", 0))
    ids, starts = state.data.get("slots", []), state.data.get("starts")
    if starts is not None and len(starts) == len(ids):
        # A choice from the list as shown (kept by ``_listed``): no query. The booking
        # itself checks that the slot still takes it.
        shown = list(zip(ids, starts, strict=True))[page * PAGE : (page + 1) * PAGE]
        number = _choice(entry, len(shown))
        if number is not None:
            slot_id, start = shown[number - 1]
            data = {
                **state.data,
                "slot": slot_id,
                "start": datetime.fromtimestamp(start, UTC).isoformat(),
            }
            return Screen(replies.ask_nik()), State(NIK, data)
    point = _chosen_point(state.data)
    if point is None:
        return Screen(replies.generic_refusal(), end=True), State()
    day = date.fromisoformat(state.data["day"])
    choices = [c for c in actions.day_slots(point, day, turn.now) if c.id in ids]
    if entry == "0" and len(choices) > (page + 1) * PAGE:
        data = {**state.data, "page": page + 1, **_listed(choices)}
        return _times_screen(point, choices, page + 1), State(TIME, data)
    shown = choices[page * PAGE : (page + 1) * PAGE]
    number = _choice(entry, len(shown))
    if number is None:  # the page again, as it is now; the choice is taken from it
        data = {**state.data, **_listed(choices)}
        return _times_screen(point, choices, page, replies.not_a_choice()), State(TIME, data)
    data = {
        **state.data,
        "slot": shown[number - 1].id,
        "start": shown[number - 1].starts_at.isoformat(),
    }
    return Screen(replies.ask_nik()), State(NIK, data)


def _nik(state: State, entry: str, turn: Turn):
    try:
        nik = validate_nik(entry)
    except InvalidNIK as exc:
        return Screen(replies.fit(f"{exc.message} {replies.ask_nik()}")), state
    data = {**state.data, "nik": seal(nik)}
    point = actions.point_by_code(state.data.get("point", ""))
    if point is not None and point.household_limit:
        return Screen(replies.ask_kk()), State(KK, data)
    return Screen(replies.ask_name()), State(NAME, data)


def _kk(state: State, entry: str, turn: Turn):
    try:
        kk = validate_kk(entry)
    except InvalidKK as exc:
        return Screen(replies.fit(f"{exc.message} {replies.ask_kk()}")), state
    return Screen(replies.ask_name()), State(NAME, {**state.data, "kk": seal(kk)})


def _name(state: State, entry: str, turn: Turn):
    try:
        name = clean_name(entry)
    except InvalidName as exc:
        return Screen(replies.fit(f"{exc.message} {replies.ask_name()}")), state
    data = {**state.data, "name": name}
    return _confirm_screen(data), State(CONFIRM, data)


def _confirm_screen(data: dict, prefix: str = "") -> Screen:
    point = _chosen_point(data)
    starts = datetime.fromisoformat(data["start"])
    nik = unseal(data.get("nik", ""))
    text = replies.confirm_booking(
        point.name if point else "?",
        starts.astimezone(_zone(point.timezone if point else "Asia/Jakarta")).date(),
        starts,
        point.timezone if point else "Asia/Jakarta",
        data.get("name", ""),
        nik[-4:],
    )
    return Screen(replies.fit((prefix + " " if prefix else "") + text))


def _confirm(state: State, entry: str, turn: Turn):
    if entry == "2":
        return Screen(replies.stopped(), end=True), State()
    if entry != "1":
        return _confirm_screen(state.data, replies.not_a_choice()), state
    data = state.data
    result = actions.book_or_wait(
        turn.channel,
        int(data["slot"]),
        data.get("name", ""),
        unseal(data.get("nik", "")),
        turn.phone,
        turn.language,
        turn.now,
        kk=unseal(data["kk"]) if data.get("kk") else "",
    )
    return Screen(replies.fit(booked_text(result)), end=True), State()


def booked_text(result: actions.Booked | actions.Waiting | actions.EnteredBallot) -> str:
    """The reply to a booking made, a waiting list joined or a ballot entered."""
    if isinstance(result, actions.Waiting):
        return replies.waiting(result.code, result.position)
    if isinstance(result, actions.EnteredBallot):
        return replies.entered_ballot(result.code, result.point, result.draw_at, result.tz)
    return replies.booked(
        result.code, result.point, result.starts_at, result.arrive_at, result.tz, result.packages
    )


def found_text(found: actions.Found) -> str:
    """The reply to a look-up (menu 2, CEK): the booking's or entry's status."""
    from slots.waiting import waiting_position

    if found.booking is not None:
        booking = found.booking
        point = booking.slot.market_point
        return replies.booking_status(
            booking.code,
            booking.status,
            point.name,
            booking.slot.starts_at,
            booking.arrive_at,
            point.timezone,
        )
    if found.ballot_entry is not None:
        outcome = found.outcome
        ballot = found.ballot_entry.ballot
        return replies.ballot_status(
            found.ballot_entry.code,
            outcome.status,
            ballot.closes_at,
            ballot.market_point.timezone,
            outcome.booking_code,
            outcome.position,
        )
    entry = found.entry
    point = entry.slot.market_point
    return replies.waiting_status(
        entry.code,
        entry.status,
        point.name,
        entry.slot.starts_at,
        point.timezone,
        waiting_position(entry),
    )


def _check(state: State, entry: str, turn: Turn):
    found = actions.look_up(entry, turn.phone)
    return Screen(replies.fit(found_text(found)), end=True), State()


def _cancel(state: State, entry: str, turn: Turn, prefix: str = ""):
    found = actions.look_up(entry, turn.phone)
    held = found.booking or found.entry
    point = held.slot.market_point
    text = replies.confirm_cancel(held.code, point.name, held.slot.starts_at, point.timezone)
    text = (prefix + " " if prefix else "") + text
    return Screen(replies.fit(text)), State(CANCEL_CONFIRM, {"code": held.code})


def _cancel_confirm(state: State, entry: str, turn: Turn):
    if entry == "2":
        return Screen(replies.stopped(), end=True), State()
    if entry != "1":  # the question again, not a bare "choose a number" without the list
        return _cancel(state, state.data.get("code", ""), turn, replies.not_a_choice())
    return Screen(
        replies.fit(cancelled_text(actions.cancel(state.data["code"], turn.phone, turn.now))),
        end=True,
    ), State()


def cancelled_text(found: actions.Found) -> str:
    """The reply to a cancellation (menu 3, BATAL)."""
    if found.booking is not None:
        return replies.cancelled(found.booking.code)
    return replies.left_waiting_list(found.entry.code)


def _zone(tz: str):
    from common.timeutil import zone

    return zone(tz)


_STEPS = {
    MENU: _menu,
    AREA: _area,
    POINT: _point,
    DAY: _day,
    TIME: _time,
    NIK: _nik,
    KK: _kk,
    NAME: _name,
    CONFIRM: _confirm,
    CHECK: _check,
    CANCEL: _cancel,
    CANCEL_CONFIRM: _cancel_confirm,
}

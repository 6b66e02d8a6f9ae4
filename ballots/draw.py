"""The draw (issue 16 §3): freeze the entry list, order it, give the places, fill the
waiting lists, publish the proof; the algorithm itself is ``ballots.algorithm``.

A draw is one transaction under the ballot's row lock (``common.locking``: the first
lock of the order, then the day's slots in id order, the day's stock row, then each
winner's resident row): two draws at once (two workers, the job and ``flask ballots
draw``) run one after the other and the second finds the ballot drawn and returns the
first's result; a crash midway rolls the whole draw back (no booking, no waiting place,
no proof), so the next run draws afresh with the same seed and list, hence the same
result.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import insert, select, update
from sqlalchemy import text as sql_text

from ballots import algorithm
from ballots.errors import BallotNotClosed
from ballots.models import NOT_DRAWN, WAITING, WON, Ballot, BallotEntry
from ballots.rounds import get_ballot
from common.audit import CLI, Actor, record
from common.links import public_url
from common.locking import lock_row
from common.timeutil import utcnow, when_text
from extensions import db
from notify.outbox import queue_message
from slots.codes import new_booking_code
from slots.errors import HouseholdLimitReached, LimitReached
from slots.identity import ResidentInput
from slots.limits import check_limits
from slots.locks import lock_resident
from slots.models import WAITING as LIST_WAITING
from slots.models import Resident, Slot, Stock, WaitingListEntry
from slots.places import insert_booking, take_place
from slots.stock import reserve_packages


def listed_entries(ballot: Ballot) -> list[BallotEntry]:
    """The ballot's entries, by entry code."""
    return list(
        db.session.scalars(
            select(BallotEntry).where(BallotEntry.ballot_id == ballot.id).order_by(BallotEntry.code)
        )
    )


def as_listed(entry: BallotEntry) -> algorithm.ListedEntry:
    """The published line of ``entry``: code, preferences, elderly flag."""
    return algorithm.ListedEntry(entry.code, tuple(entry.slot_ids), entry.elderly)


def freeze(ballot: Ballot, now: datetime) -> None:
    """Freeze the entry list of ``ballot`` (its row lock held): its canonical form's
    hash is published as ``list_hash`` and no entry is taken after
    (``ballots.entering``; issue 16 §3).

    On PostgreSQL the transaction first takes ``LOCK TABLE ballot_entry IN SHARE
    MODE``: it waits for every transaction that has begun an insert into the table
    (their ROW EXCLUSIVE lock, held until they end) and keeps new inserts waiting until
    this transaction ends. An entry's insert takes that lock before its statement's
    snapshot (READ COMMITTED), so an entry either committed before the lock was had
    (and the list read below, a later statement, sees it), or its snapshot sees
    ``frozen_at`` and it writes nothing. The lock also holds back entries of other
    ballots until the commit: ``freeze_ballot`` freezes in a transaction of its own.
    On SQLite writers are serialised: the entry's insert re-checks ``frozen_at``.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sql_text("LOCK TABLE ballot_entry IN SHARE MODE"))
    listed = algorithm.canonical_list(as_listed(e) for e in listed_entries(ballot))
    ballot.list_hash = algorithm.list_hash(listed)
    ballot.frozen_at = now


def freeze_ballot(ballot_id: int, now: datetime | None = None) -> bool:
    """Freeze ballot ``ballot_id``'s entry list once its window has closed, so that
    the draw (``draw_ballot``, in the next transaction) holds the table lock of
    ``freeze`` for a moment only; the caller commits at once.

    Returns: True if frozen now, False if it was frozen already or is still open.
    Raises: BallotNotFound (404).
    """
    now = now or utcnow()
    ballot = get_ballot(ballot_id)
    lock_row(Ballot, ballot.id, Ballot.drawn_at)
    db.session.refresh(ballot)
    if ballot.frozen_at is not None or now < ballot.closes_at:
        return False
    freeze(ballot, now)
    db.session.flush()
    return True


def draw_ballot(ballot_id: int, now: datetime | None = None, actor: Actor = CLI) -> dict:
    """Draw ballot ``ballot_id`` (issue 16 §3), once.

    Args: now, aware UTC (default the clock); actor, who (audited ``ballot.draw``).
    Returns: the proof (``ballots.proof.proof_json``'s fields) of the draw, this one or
      the one already made.
    Effects: the list frozen (if not yet); winners get confirmed bookings (with their
      stock packages, arrival waves and ``confirmation`` notices); the others join the
      waiting lists of their preferences in draw order and get a ``ballot_result``
      message; the slots no longer held, so places left open first-come.
    Raises: BallotNotFound (404); BallotNotClosed (409) before ``closes_at``.
    """
    now = now or utcnow()
    ballot = get_ballot(ballot_id)
    lock_row(Ballot, ballot.id, Ballot.drawn_at)
    db.session.refresh(ballot)
    if ballot.drawn_at is not None:
        return json.loads(ballot.proof)
    if ballot.frozen_at is None:
        if now < ballot.closes_at:
            raise BallotNotClosed()
        freeze(ballot, now)
    slots = list(
        db.session.scalars(select(Slot).where(Slot.ballot_id == ballot.id).order_by(Slot.id))
    )
    for slot in slots:
        lock_row(Slot, slot.id, Slot.booked_count)
        db.session.refresh(slot)
    stock = db.session.scalar(
        select(Stock).where(
            Stock.market_point_id == ballot.market_point_id, Stock.day == ballot.day
        )
    )
    cap = None
    if stock is not None:
        lock_row(Stock, stock.id, Stock.packages)
        db.session.refresh(stock)
        cap = max(stock.packages - stock.reserved, 0) // stock.per_booking
    # A slot that has ended or that the market closed while the ballot ran (issue 8)
    # gives no place: ``take_place`` would refuse it.
    places = {
        slot.id: max(slot.capacity - slot.booked_count, 0) if _gives_places(slot, now) else 0
        for slot in slots
    }
    by_id = {slot.id: slot for slot in slots}
    entries = {entry.code: entry for entry in listed_entries(ballot)}
    listed = {code: as_listed(entry) for code, entry in entries.items()}
    text = algorithm.canonical_list(listed.values())
    if algorithm.list_hash(text) != ballot.list_hash:  # an entry slipped past the freeze
        raise RuntimeError(f"ballot {ballot.id}: the entry list changed after it was frozen")
    order = algorithm.draw_order(ballot.seed, ballot.list_hash, listed)
    share = current_app.config["BALLOT_ELDERLY_SHARE"]
    quota = algorithm.elderly_places(algorithm.places_given(places, cap), share)
    residents: dict[str, int] = {}

    def eligible(code: str, slot_id: int) -> bool:
        entry = entries[code]
        resident = db.session.get(Resident, entry.resident_id)
        residents[code] = lock_resident(resident.nik_hash, resident.nik_last4)
        try:
            check_limits(residents[code], entry.kk_hash, by_id[slot_id].starts_at)
        except (LimitReached, HouseholdLimitReached):
            return False
        return True

    outcome = algorithm.allocate(order, listed, places, cap, quota, eligible)
    # The slots are free of the ballot before any place is taken (``take_place`` refuses
    # a held slot); their row locks stay held until the commit.
    db.session.execute(
        update(Slot)
        .where(Slot.ballot_id == ballot.id)
        .values(ballot_id=None)
        .execution_options(synchronize_session=False)
    )
    for slot in slots:
        db.session.expire(slot, ["ballot_id", "booked_count"])
    for code, slot_id in outcome.winners:
        _book_winner(entries[code], by_id[slot_id], residents[code], now)
    lines = {slot.id for slot in slots if _gives_places(slot, now)}
    positions = _fill_waiting_lists(outcome.waiting, entries, lines, now)
    for code in outcome.waiting:
        # An entry whose every preference the market closed has no line to wait in.
        entries[code].status = WAITING if code in positions else NOT_DRAWN
        _tell_result(ballot, entries[code], positions.get(code), by_id, now)
    for code in outcome.skipped:
        entries[code].status = NOT_DRAWN
        _tell_result(ballot, entries[code], None, by_id, now, skipped=True)
    proof = {
        "algorithm": ballot.algorithm,
        "commitment": ballot.commitment,
        "seed": ballot.seed,
        "list_hash": ballot.list_hash,
        "order": order,
        "winners": [{"entry_code": code, "slot_id": slot_id} for code, slot_id in outcome.winners],
        "waiting": outcome.waiting,
        "skipped": outcome.skipped,
        "places": {str(slot_id): count for slot_id, count in places.items()},
        "cap": cap,
        "elderly_share": share,
        "elderly_places": quota,
    }
    ballot.proof = json.dumps(proof, separators=(",", ":"))
    ballot.drawn_at = now
    record(
        actor,
        "ballot.draw",
        "ballot",
        ballot.id,
        {},
        {"entries": len(entries), "winners": len(outcome.winners), "list_hash": ballot.list_hash},
        market_point_id=ballot.market_point_id,
        now=now,
    )
    db.session.flush()
    return proof


def _book_winner(entry: BallotEntry, slot: Slot, resident_id: int, now: datetime) -> None:
    """Give ``entry`` a confirmed booking in ``slot`` (its place and the day's stock
    counted here, under the locks the draw holds) with its ``confirmation`` notice."""
    if not take_place(slot.id):  # the allocation counted this place: it is there
        raise RuntimeError(f"slot {slot.id}: no place for ballot entry {entry.code}")
    packages = reserve_packages(slot.market_point_id, entry.ballot.day)
    person = ResidentInput(
        entry.name, "", entry.nik_last4, entry.phone, entry.language, entry.kk_hash
    )
    booking_id, _code, _arrive = insert_booking(
        slot, resident_id, person, now, "confirmation", packages, channel="ballot"
    )
    entry.status = WON
    entry.booking_id = booking_id


def _gives_places(slot: Slot, now: datetime) -> bool:
    """True when ``slot`` can still take a booking at ``now`` (aware UTC): not ended,
    not closed by the market."""
    return slot.ends_at > now and slot.closed_at is None


def _fill_waiting_lists(
    waiting: list[str], entries: dict[str, BallotEntry], lines: set[int], now: datetime
) -> dict[str, tuple[int, int]]:
    """Put each of ``waiting`` (codes in draw order) on the waiting lists of its
    preferences among ``lines`` (the slot ids that still take bookings), one Core insert
    per row so the ids (the lines' order) follow the draw.
    Returns: code -> (place in line, 1 = next; slot id) on its first such preference's
      list; a code with no such preference is left out."""
    placed: dict[int, int] = defaultdict(int)
    positions: dict[str, tuple[int, int]] = {}
    rows = []
    for code in waiting:
        entry = entries[code]
        for slot_id in entry.slot_ids:
            if slot_id not in lines:
                continue
            placed[slot_id] += 1
            if code not in positions:
                positions[code] = (placed[slot_id], slot_id)
            rows.append(
                {
                    "code": new_booking_code(),
                    "slot_id": slot_id,
                    "resident_id": entry.resident_id,
                    "name": entry.name,
                    "nik_last4": entry.nik_last4,
                    "phone": entry.phone,
                    "language": entry.language,
                    "kk_hash": entry.kk_hash,
                    "status": LIST_WAITING,
                    "created_at": now,
                }
            )
    statement = insert(WaitingListEntry)
    for row in rows:
        db.session.execute(statement, row)
    return positions


def _tell_result(
    ballot: Ballot,
    entry: BallotEntry,
    position: tuple[int, int] | None,
    slots: dict,
    now: datetime,
    skipped: bool = False,
) -> None:
    """Queue the ``ballot_result`` message of an entry that did not win: its place in
    line (``position``: place, slot id), or why it has none (``skipped`` by the per-NIK
    limit, else every slot it chose closed by the market)."""
    if not entry.phone:
        return
    point = ballot.market_point
    link = public_url("ballots.page", ballot_id=ballot.id)
    with force_locale(entry.language or "id"):
        if skipped:
            text = _(
                "Antri: entry %(code)s in the ballot of %(point)s got no place: this NIK "
                "holds another booking in the period. Details: %(link)s",
                code=entry.code,
                point=point.name,
                link=link,
            )
        elif position is None:
            text = _(
                "Antri: entry %(code)s in the ballot of %(point)s got no place: the "
                "market closed the slots you chose. Details: %(link)s",
                code=entry.code,
                point=point.name,
                link=link,
            )
        else:
            line = slots[position[1]]
            text = _(
                "Antri: entry %(code)s in the ballot of %(point)s was not drawn. You are "
                "number %(position)s on the waiting list of %(when)s. Details: %(link)s",
                code=entry.code,
                point=point.name,
                position=position[0],
                when=when_text(line.starts_at, point.timezone, zone_name=True),
                link=link,
            )
    queue_message(
        entry.phone,
        text,
        kind="ballot_result",
        ref=f"ballot-result:{entry.code}",
        language=entry.language,
        now=now,
    )


def due_ballots(now: datetime) -> list[int]:
    """Ids of the ballots whose window has closed by ``now`` and that are not drawn."""
    return list(
        db.session.scalars(
            select(Ballot.id)
            .where(Ballot.drawn_at.is_(None), Ballot.closes_at <= now)
            .order_by(Ballot.closes_at)
        )
    )

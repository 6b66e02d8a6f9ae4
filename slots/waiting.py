"""The waiting list: joining, leaving, one's place in line, and promotion.

Rule (issue 3): a freed place goes to the first in line who is still within the
limits; nobody is promoted into a slot that has ended or was closed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import (
    func,
    select,
    update,
)

from common.timeutil import utcnow
from extensions import db
from slots.availability import get_slot, valid_id
from slots.codes import match_phone, new_booking_code, normalise_code
from slots.errors import (
    AlreadyBooked,
    AlreadyWaiting,
    BallotRunning,
    NotWaiting,
    SlotClosed,
    SlotClosedByMarket,
    SlotNotFound,
    SlotNotFull,
    SoldOut,
    WaitingEntryNotFound,
)
from slots.feed import record_slot_change
from slots.identity import ResidentInput, resident_input
from slots.limits import (
    check_limits,
    holds_place_in,
    household_hash,
    may_take,
)
from slots.locks import lock_household, lock_resident, lock_slot
from slots.models import LEFT, PROMOTED, SKIPPED, WAITING, Booking, Resident, Slot, WaitingListEntry
from slots.places import give_back_places, new_booking, take_place
from slots.status import transition
from slots.stock import covers_one_more, give_back_packages, reserve_packages, slot_day


def free_place(slot: Slot, now: datetime) -> None:
    """Hand one freed place of ``slot`` to the waiting list, or give it back."""
    if promote(slot, now) is None:
        give_back_places(slot.id)
    db.session.flush()
    db.session.expire(slot, ["booked_count"])


def promote(slot: Slot, now: datetime) -> Booking | None:
    """Give one place that is already counted in ``slot.booked_count`` to the first
    waiting resident who is within the per-NIK limit; return their new booking.

    Entries over the limit when their turn comes are marked ``skipped``. Nobody is
    promoted into a slot that has ended, nor while the slot's point-day stock cannot
    cover the promotion (the entry keeps waiting); a promoted booking reserves its
    packages (after the slot's lock, before the resident's: the lock order).
    Returns None when nobody could take it.
    Rules: issue 3 (a freed place goes to the first in line still within the limit);
      issue 15 (the waiting list promotes only while stock covers the promotion).
    """
    if slot.ends_at <= now or slot.closed_at is not None:
        return None
    if not covers_one_more(slot):
        return None
    day = slot_day(slot)
    while True:
        entry = db.session.scalar(
            select(WaitingListEntry)
            .where(WaitingListEntry.slot_id == slot.id, WaitingListEntry.status == WAITING)
            .order_by(WaitingListEntry.id)
            .limit(1)
        )
        if entry is None:
            return None
        resident = db.session.get(Resident, entry.resident_id)
        # Check first without the resident's lock, so residents who are skipped are
        # never locked (holding their locks across slots could deadlock); lock only
        # the one to promote, and check again under the lock.
        within = may_take(entry, slot)
        packages = 0
        if within:
            try:
                packages = reserve_packages(slot.market_point_id, day)
            except SoldOut:
                return None
            lock_resident(resident.nik_hash, resident.nik_last4)
            if entry.kk_hash is not None:
                lock_household(entry.kk_hash, now)
            within = may_take(entry, slot)
        claimed = transition(
            WaitingListEntry, entry.id, WAITING, PROMOTED if within else SKIPPED, resolved_at=now
        )
        if not claimed or not within:
            give_back_packages(slot.market_point_id, day, packages)
            continue  # another transaction took this entry, or it may not book
        person = ResidentInput(
            entry.name,
            resident.nik_hash,
            entry.nik_last4,
            entry.phone,
            entry.language,
            entry.kk_hash,
        )
        booking = new_booking(slot, entry.resident_id, person, now, "promotion", packages)
        db.session.execute(
            update(WaitingListEntry)
            .where(WaitingListEntry.id == entry.id)
            .values(booking_id=booking.id)
            .execution_options(synchronize_session=False)
        )
        db.session.expire(entry)
        return booking


def fill_from_waiting_list(slot: Slot, now: datetime) -> int:
    """Give the free places of ``slot`` (row lock held) to its waiting list; return
    how many residents got one."""
    promoted = 0
    while slot.booked_count < slot.capacity and slot.ends_at > now and slot.closed_at is None:
        waiting = db.session.scalar(
            select(WaitingListEntry.id)
            .where(WaitingListEntry.slot_id == slot.id, WaitingListEntry.status == WAITING)
            .limit(1)
        )
        if waiting is None:
            break
        # promote hands over a place already counted: count it, give it back if unused.
        if not take_place(slot.id):
            db.session.refresh(slot)
            break
        if promote(slot, now) is None:
            give_back_places(slot.id)
            db.session.refresh(slot)
            break
        promoted += 1
        db.session.refresh(slot)
    return promoted


def join_waiting_list(
    slot_id: int,
    name: str,
    nik: str,
    phone: str,
    now: datetime | None = None,
    language: str = "id",
    kk: str = "",
) -> WaitingListEntry:
    """Put a resident on a full slot's waiting list, or on the list of any slot of a
    day whose stock is sold out (issue 15).

    Returns: the new entry (flushed); its ``code`` lets the resident check the
      position (see ``waiting_position``).
    Raises: InvalidName/InvalidNIK/InvalidPhone (422), SlotNotFound (404),
      SlotClosed, SlotNotFull (book instead), AlreadyBooked, LimitReached,
      AlreadyWaiting (409).
    """
    now = now or utcnow()
    if not valid_id(slot_id):
        raise SlotNotFound()
    person = resident_input(name, nik, phone, language)
    slot = get_slot(slot_id, now)
    if slot.ends_at <= now:
        raise SlotClosed()
    person = replace(person, kk_hash=household_hash(slot.market_point, kk))
    # Under the slot's lock, a concurrent cancellation either sees this entry (and
    # promotes it) or has already freed its place (and this join is refused).
    lock_slot(slot)
    db.session.refresh(slot, ["closed_at", "ballot_id"])
    if slot.closed_at is not None:
        raise SlotClosedByMarket()
    if slot.ballot_id is not None:  # the draw fills its waiting lists (issue 16)
        raise BallotRunning()
    resident_id = lock_resident(person.nik_hash, person.nik_last4)
    # A sold-out day keeps its waiting list open (issue 15): stock given back later
    # goes to those waiting.
    if slot.booked_count < slot.capacity and covers_one_more(slot):
        raise SlotNotFull()
    if holds_place_in(resident_id, slot.id):
        raise AlreadyBooked()
    check_limits(resident_id, person.kk_hash, slot.starts_at)
    already = db.session.scalar(
        select(WaitingListEntry.id).where(
            WaitingListEntry.slot_id == slot.id,
            WaitingListEntry.resident_id == resident_id,
            WaitingListEntry.status == WAITING,
        )
    )
    if already is not None:
        raise AlreadyWaiting()
    entry = WaitingListEntry(
        code=new_booking_code(),
        slot=slot,
        resident_id=resident_id,
        name=person.name,
        nik_last4=person.nik_last4,
        phone=person.phone,
        language=person.language,
        kk_hash=person.kk_hash,
        status=WAITING,
        created_at=now,
    )
    db.session.add(entry)
    db.session.flush()
    record_slot_change("waiting_list", slot, now, action="joined")
    return entry


def waiting_position(entry: WaitingListEntry) -> int | None:
    """Return the entry's place in line (1 = next), or None when it is not waiting."""
    if entry.status != WAITING:
        return None
    ahead = db.session.scalar(
        select(func.count(WaitingListEntry.id)).where(
            WaitingListEntry.slot_id == entry.slot_id,
            WaitingListEntry.status == WAITING,
            WaitingListEntry.id < entry.id,
        )
    )
    return ahead + 1


def find_waiting_entry(code: str) -> WaitingListEntry | None:
    """Return the waiting-list entry with ``code`` (any typing of it), or None."""
    canonical = normalise_code(code)
    if canonical is None:
        return None
    return db.session.scalar(select(WaitingListEntry).where(WaitingListEntry.code == canonical))


def get_waiting_entry_for_resident(code: str, phone: str) -> WaitingListEntry:
    """Return the waiting-list entry matching its code and phone.

    Raises: WaitingEntryNotFound for any mismatch.
    """
    return match_phone(find_waiting_entry(code), phone, WaitingEntryNotFound)


def leave_waiting_list(entry: WaitingListEntry, now: datetime | None = None) -> WaitingListEntry:
    """Take a waiting resident off the list.

    Raises: NotWaiting (409) when the entry was already promoted, left or expired.
    """
    now = now or utcnow()
    left = transition(WaitingListEntry, entry.id, WAITING, LEFT, resolved_at=now)
    db.session.refresh(entry)
    if not left:
        raise NotWaiting()
    record_slot_change("waiting_list", entry.slot, now, action="left")
    return entry


def someone_may_take(slot: Slot, freed: int = 0) -> bool:
    """True when a resident waiting for ``slot`` is within the per-NIK limit for it and
    the slot's point-day stock covers a promotion once ``freed`` packages (count: those
    of the booking about to be released) are given back (issue 15)."""
    if not covers_one_more(slot, freed):
        return False
    entries = db.session.scalars(
        select(WaitingListEntry)
        .where(WaitingListEntry.slot_id == slot.id, WaitingListEntry.status == WAITING)
        .order_by(WaitingListEntry.id)
    )
    return any(entry.resident_id is not None and may_take(entry, slot) for entry in entries)

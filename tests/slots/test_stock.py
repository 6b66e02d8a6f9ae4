"""Stock per market point and day (issue 15): setting it, reserving on booking, and
every path that gives packages back (cancellation, no-show expiry, late release, a
closed slot or day, a move), with promotion only while stock covers it.

After each step the books must balance: the stock row's ``reserved`` equals the sum of
the ``packages`` of the day's active bookings (``_balanced``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from common.audit import CLI, AuditEntry
from common.timeutil import utcnow
from extensions import db
from slots.booking import book_slot, cancel_booking
from slots.errors import (
    InvalidStock,
    MarketPointNotFound,
    SlotNotFull,
    SoldOut,
    StockBelowReserved,
    StockNotSet,
)
from slots.housekeeping import (
    expire_past_slots,
    fill_waiting_lists_with_stock,
    release_late_arrivals,
)
from slots.models import ACTIVE_STATUSES, CHECKED_IN, Booking, Slot, Stock, WaitingListEntry
from slots.staff import close_day, close_slot, move_booking
from slots.stock import get_stock, set_stock, slot_day, sold_out_days, stock_level
from slots.waiting import join_waiting_list

PHONE = "081234567890"


def _book(slot, nik):
    booking = book_slot(slot.id, "Budi Santoso", nik(), PHONE)
    db.session.commit()
    return booking


def _stock(slot) -> Stock:
    db.session.expire_all()
    return db.session.scalar(
        select(Stock).where(
            Stock.market_point_id == slot.market_point_id, Stock.day == slot_day(slot)
        )
    )


def _balanced(slot) -> int:
    """Assert the day's reserved equals its active bookings' packages; return it."""
    row = _stock(slot)
    day = slot_day(slot)
    held = sum(
        booking.packages
        for booking in db.session.scalars(
            select(Booking)
            .join(Slot, Booking.slot_id == Slot.id)
            .where(
                Slot.market_point_id == slot.market_point_id,
                Booking.status.in_(ACTIVE_STATUSES),
            )
        )
        if slot_day(booking.slot) == day
    )
    assert row.reserved == held
    assert 0 <= row.handed_out <= row.reserved <= row.packages
    return row.reserved


@pytest.mark.parametrize(
    ("packages", "per_booking", "field"),
    [
        (-1, 1, "packages"),
        (1_000_001, 1, "packages"),
        ("5", 1, "packages"),
        (True, 1, "packages"),
        (None, 1, "packages"),
        (5, 0, "per_booking"),
        (5, 101, "per_booking"),
        (5, 1.5, "per_booking"),
    ],
)
def test_set_stock_refuses_bad_numbers(ctx, make_point, packages, per_booking, field):
    point = make_point()
    with pytest.raises(InvalidStock) as refused:
        set_stock(point.code, utcnow().date(), packages, per_booking, CLI)
    assert list(refused.value.fields) == [field]
    assert db.session.scalar(select(func.count(Stock.id))) == 0


def test_set_stock_unknown_point_and_unset_day(ctx, make_point):
    with pytest.raises(MarketPointNotFound):
        set_stock("JKT-404", utcnow().date(), 5, 1, CLI)
    point = make_point()
    with pytest.raises(StockNotSet):
        get_stock(point.code, utcnow().date())


def test_booking_reserves_until_sold_out(ctx, make_slot, nik):
    slot = make_slot(capacity=5, starts_in=120)
    set_stock(slot.market_point.code, slot_day(slot), 4, 2, CLI)
    db.session.commit()
    first, second = _book(slot, nik), _book(slot, nik)
    assert (first.packages, second.packages) == (2, 2)
    assert sold_out_days(slot.market_point, [slot_day(slot)]) == {slot_day(slot)}
    with pytest.raises(SoldOut):
        book_slot(slot.id, "Ani", nik(), PHONE)
    db.session.rollback()
    assert db.session.get(Slot, slot.id).booked_count == 2  # the place went back too
    assert _balanced(slot) == 4


def test_a_day_without_stock_books_as_before(ctx, make_slot, nik):
    slot = make_slot(capacity=2, starts_in=120)
    assert _book(slot, nik).packages == 0
    assert db.session.scalar(select(func.count(Stock.id))) == 0
    assert sold_out_days(slot.market_point, [slot_day(slot)]) == set()


def test_first_setting_reserves_for_bookings_already_made(ctx, make_slot, nik):
    slot = make_slot(capacity=5, starts_in=120)
    later = make_slot(capacity=5, starts_in=180, point=slot.market_point)
    bookings = [_book(slot, nik), _book(slot, nik), _book(later, nik)]
    bookings[0].status = CHECKED_IN  # admitted before stock was set: took its packages
    bookings[0].checked_in_at = utcnow()
    db.session.commit()
    with pytest.raises(StockBelowReserved) as refused:
        set_stock(slot.market_point.code, slot_day(slot), 5, 2, CLI)
    assert refused.value.details == {"reserved": 6}
    db.session.rollback()
    assert db.session.scalar(select(func.count(Stock.id))) == 0
    level = set_stock(slot.market_point.code, slot_day(slot), 6, 2, CLI)
    db.session.commit()
    assert (level.reserved, level.handed_out, level.left) == (6, 2, 0)
    db.session.expire_all()
    assert [db.session.get(Booking, b.id).packages for b in bookings] == [2, 2, 2]
    assert db.session.get(Booking, bookings[0].id).handed_out_at is not None
    assert _balanced(slot) == 6


def test_lowering_below_reserved_is_refused_and_every_change_audited(ctx, make_slot, nik):
    slot = make_slot(capacity=5, starts_in=120)
    code, day = slot.market_point.code, slot_day(slot)
    set_stock(code, day, 5, 1, CLI)
    db.session.commit()
    for _ in range(3):
        _book(slot, nik)
    with pytest.raises(StockBelowReserved) as refused:
        set_stock(code, day, 2, 1, CLI)
    assert refused.value.details == {"reserved": 3}
    db.session.rollback()
    level = set_stock(code, day, 3, 1, CLI)
    db.session.commit()
    assert (level.packages, level.reserved, level.left) == (3, 3, 0)
    audit = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "stock.set").order_by(AuditEntry.id)
    ).all()
    assert [a.target_id for a in audit] == [f"{code}/{day.isoformat()}"] * 2
    assert '"packages": 5' in audit[1].before and '"packages": 3' in audit[1].after


def test_cancellation_gives_back_and_promotion_reserves(ctx, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    set_stock(slot.market_point.code, slot_day(slot), 5, 2, CLI)
    db.session.commit()
    first = _book(slot, nik)
    entry = join_waiting_list(slot.id, "Rudi", nik(), "081298765432")
    db.session.commit()
    assert _balanced(slot) == 2
    cancel_booking(first)
    db.session.commit()
    db.session.expire_all()
    promoted = db.session.get(WaitingListEntry, entry.id).booking
    assert promoted is not None and promoted.packages == 2
    assert db.session.get(Booking, first.id).status == "cancelled"
    assert _balanced(slot) == 2


def test_waiting_list_stays_open_when_sold_out_and_promotes_only_while_covered(ctx, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=180)
    code, day = slot.market_point.code, slot_day(slot)
    set_stock(code, day, 1, 1, CLI)
    db.session.commit()
    first = _book(slot, nik)
    # A place is free but the day is sold out: the waiting list takes the resident.
    waiting = join_waiting_list(slot.id, "Rudi", nik(), "081298765432")
    db.session.commit()
    # Raise what a booking takes: the package the first booking gives back no longer
    # covers a promotion, so nobody is promoted and the entry keeps waiting.
    set_stock(code, day, 2, 3, CLI)
    db.session.commit()
    cancel_booking(first)
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(WaitingListEntry, waiting.id).status == "waiting"
    assert db.session.get(Slot, slot.id).booked_count == 0
    assert _balanced(slot) == 0
    # More packages: the setting hands the free places to the waiting list at once.
    set_stock(code, day, 6, 3, CLI)
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(WaitingListEntry, waiting.id).booking.packages == 3
    assert _balanced(slot) == 3
    # Not sold out any more, with places free: joining is refused (book instead).
    with pytest.raises(SlotNotFull):
        join_waiting_list(slot.id, "Tono", nik(), "081298765433")


def test_no_show_expiry_gives_back_but_never_what_was_handed_out(ctx, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=60)
    set_stock(slot.market_point.code, slot_day(slot), 5, 1, CLI)
    db.session.commit()
    missed, admitted = _book(slot, nik), _book(slot, nik)
    row = _stock(slot)
    # What the gate's admission does (helper D's handout): checked in, handed out.
    admitted.status, admitted.checked_in_at, admitted.handed_out_at = (
        CHECKED_IN,
        utcnow(),
        utcnow(),
    )
    row.handed_out = 1
    db.session.commit()
    assert expire_past_slots(slot.ends_at + timedelta(minutes=30)) == (1, 0)
    db.session.commit()
    assert db.session.get(Booking, missed.id).status == "no_show"
    row = _stock(slot)
    assert (row.reserved, row.handed_out) == (1, 1)
    assert _balanced(slot) == 1


def test_late_release_gives_back_and_promotes(ctx, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=-20, minutes=60)
    set_stock(slot.market_point.code, slot_day(slot), 2, 1, CLI)
    db.session.commit()
    # Booked before the slot began; not here 20 minutes into it (grace 15).
    late = book_slot(slot.id, "Budi", nik(), PHONE, now=utcnow() - timedelta(minutes=25))
    db.session.commit()
    entry = join_waiting_list(slot.id, "Rudi", nik(), "081298765432")
    db.session.commit()
    assert release_late_arrivals() == 1
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Booking, late.id).status == "no_show"
    assert db.session.get(WaitingListEntry, entry.id).booking.packages == 1
    assert _balanced(slot) == 1


def test_closing_a_slot_and_a_day_gives_back(ctx, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=120)
    other = make_slot(capacity=3, starts_in=180, point=slot.market_point)
    set_stock(slot.market_point.code, slot_day(slot), 10, 2, CLI)
    db.session.commit()
    _book(slot, nik), _book(slot, nik), _book(other, nik)
    assert _balanced(slot) == 6
    closed = close_slot(slot.id, CLI)
    db.session.commit()
    assert closed.bookings_cancelled == 2
    assert _balanced(slot) == 2
    close_day(slot.market_point.code, slot_day(slot), CLI)
    db.session.commit()
    assert _balanced(slot) == 0


def test_a_move_to_another_day_takes_its_packages_along(ctx, make_slot, nik):
    today = make_slot(capacity=3, starts_in=120)
    also_today = make_slot(capacity=3, starts_in=240, point=today.market_point)
    tomorrow = make_slot(capacity=3, starts_in=120 + 24 * 60, point=today.market_point)
    code = today.market_point.code
    set_stock(code, slot_day(today), 5, 1, CLI)
    set_stock(code, slot_day(tomorrow), 3, 3, CLI)
    db.session.commit()
    first, second = _book(today, nik), _book(today, nik)
    # Same day: nothing changes.
    move_booking(first.code, also_today.id, CLI)
    db.session.commit()
    assert (_balanced(today), db.session.get(Booking, first.id).packages) == (2, 1)
    # Another day: one package back today, three reserved tomorrow.
    move_booking(first.code, tomorrow.id, CLI)
    db.session.commit()
    assert db.session.get(Booking, first.id).packages == 3
    assert (_balanced(today), _balanced(tomorrow)) == (1, 3)
    # Tomorrow is sold out now: the second booking may not follow; nothing changes.
    with pytest.raises(SoldOut):
        move_booking(second.code, tomorrow.id, CLI)
    db.session.rollback()
    db.session.expire_all()
    assert db.session.get(Booking, second.id).slot_id == today.id
    assert (_balanced(today), _balanced(tomorrow)) == (1, 3)
    assert db.session.get(Slot, tomorrow.id).booked_count == 1


def test_stock_level_reads_what_set_stock_wrote(ctx, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=120)
    set_stock(slot.market_point.code, slot_day(slot), 7, 1, CLI)
    db.session.commit()
    _book(slot, nik)
    level = stock_level(slot.market_point, slot_day(slot))
    assert (level.packages, level.per_booking, level.reserved, level.left) == (7, 1, 1, 6)


def test_stock_given_back_in_one_slot_reaches_another_slots_waiting_list(ctx, make_slot, nik):
    """A sold-out day: residents wait at a slot with places free. A cancellation in
    another slot of that day gives a package back; the timed work promotes the first
    of them (its own lock order: that slot, then the stock row)."""
    early = make_slot(capacity=5, starts_in=180)
    late = make_slot(capacity=5, starts_in=210, point=early.market_point)
    set_stock(early.market_point.code, slot_day(early), 2, 1, CLI)
    db.session.commit()
    _book(early, nik)
    leaving = _book(late, nik)
    waiting = join_waiting_list(early.id, "Rudi", nik(), "081298765432")
    db.session.commit()
    assert _balanced(early) == 2

    cancel_booking(leaving)  # the late slot's list is empty: the package stays free
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(WaitingListEntry, waiting.id).status == "waiting"
    assert _balanced(early) == 1

    assert fill_waiting_lists_with_stock() == 1
    db.session.commit()
    db.session.expire_all()
    entry = db.session.get(WaitingListEntry, waiting.id)
    assert (entry.status, entry.booking.slot_id, entry.booking.packages) == (
        "promoted",
        early.id,
        1,
    )
    assert _balanced(early) == 2
    assert db.session.get(Slot, early.id).booked_count == 2
    # Sold out again: a second sweep promotes nobody and takes no lock.
    assert fill_waiting_lists_with_stock() == 0

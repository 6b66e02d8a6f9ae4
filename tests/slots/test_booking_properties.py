"""Property-based test: random book / cancel / join / leave / expire sequences on a
real database keep every booking invariant after every step."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from common.errors import DomainError
from common.timeutil import utcnow
from extensions import db
from slots.booking import book_slot, cancel_booking
from slots.housekeeping import expire_past_slots
from slots.models import (
    ACTIVE_STATUSES,
    Booking,
    MarketPoint,
    Slot,
    WaitingListEntry,
)
from slots.waiting import join_waiting_list, leave_waiting_list
from tests.conftest import NIK_PREFIX, empty_tables

PEOPLE = [f"{NIK_PREFIX}{serial:04d}" for serial in range(1, 6)]
PHONES = [f"08121111{serial:04d}" for serial in range(1, 6)]


class BookingMachine(RuleBasedStateMachine):
    """Three slots (capacities 1, 2, 1; the last 9 days later), five residents."""

    @initialize()
    def setup(self):
        empty_tables()
        self.now = utcnow().replace(second=0, microsecond=0)
        point = MarketPoint(code="JKT-990", name="Pasar Sifat", safe_limit=40)
        db.session.add(point)
        self.slots = []
        for capacity, hours in ((1, 3), (2, 4), (1, 9 * 24)):
            start = self.now + timedelta(hours=hours)
            slot = Slot(
                market_point=point,
                starts_at=start,
                ends_at=start + timedelta(minutes=30),
                capacity=capacity,
                booked_count=0,
                published_at=self.now - timedelta(days=1),
            )
            db.session.add(slot)
            self.slots.append(slot)
        db.session.commit()
        self.slot_ids = [s.id for s in self.slots]

    def _attempt(self, action) -> None:
        try:
            action()
        except DomainError:
            db.session.rollback()
        else:
            db.session.commit()

    @rule(slot=st.integers(0, 2), person=st.integers(0, 4))
    def book(self, slot, person):
        self._attempt(
            lambda: book_slot(
                self.slot_ids[slot], "Warga", PEOPLE[person], PHONES[person], self.now
            )
        )

    @rule(slot=st.integers(0, 2), person=st.integers(0, 4))
    def join(self, slot, person):
        self._attempt(
            lambda: join_waiting_list(
                self.slot_ids[slot], "Warga", PEOPLE[person], PHONES[person], self.now
            )
        )

    @rule(pick=st.integers(0, 50))
    def cancel(self, pick):
        bookings = db.session.scalars(select(Booking).order_by(Booking.id)).all()
        if bookings:
            booking = bookings[pick % len(bookings)]
            self._attempt(lambda: cancel_booking(booking, self.now))

    @rule(pick=st.integers(0, 50))
    def leave(self, pick):
        entries = db.session.scalars(select(WaitingListEntry).order_by(WaitingListEntry.id)).all()
        if entries:
            entry = entries[pick % len(entries)]
            self._attempt(lambda: leave_waiting_list(entry, self.now))

    @rule(minutes=st.integers(0, 6 * 60))
    def expire(self, minutes):
        self.now += timedelta(minutes=minutes)
        expire_past_slots(self.now)
        db.session.commit()

    @invariant()
    def capacity_and_counts(self):
        if not hasattr(self, "slot_ids"):
            return
        db.session.expire_all()
        for slot in db.session.scalars(select(Slot)):
            active = db.session.scalar(
                select(func.count(Booking.id)).where(
                    Booking.slot_id == slot.id, Booking.status.in_(ACTIVE_STATUSES)
                )
            )
            assert slot.booked_count == active <= slot.capacity
            waiting = db.session.scalar(
                select(func.count(WaitingListEntry.id)).where(
                    WaitingListEntry.slot_id == slot.id, WaitingListEntry.status == "waiting"
                )
            )
            if waiting and slot.ends_at > self.now:
                assert slot.booked_count == slot.capacity, "a free place while people wait"

    @invariant()
    def one_booking_per_person_per_week(self):
        if not hasattr(self, "slot_ids"):
            return
        rows = db.session.execute(
            select(Booking.resident_id, Slot.starts_at)
            .join(Slot, Booking.slot_id == Slot.id)
            .where(Booking.status.in_(ACTIVE_STATUSES))
        ).all()
        for i, (resident, start) in enumerate(rows):
            for other, other_start in rows[i + 1 :]:
                if resident == other:
                    assert abs(start - other_start) >= timedelta(days=7)

    @invariant()
    def promotions_are_bookings(self):
        if not hasattr(self, "slot_ids"):
            return
        for entry in db.session.scalars(
            select(WaitingListEntry).where(WaitingListEntry.status == "promoted")
        ):
            assert entry.booking is not None
            assert (entry.booking.slot_id, entry.booking.resident_id) == (
                entry.slot_id,
                entry.resident_id,
            )

    def teardown(self):
        db.session.remove()


@pytest.mark.slow
def test_booking_invariants_hold_under_random_sequences(ctx):
    run_state_machine_as_test(
        BookingMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        ),
    )

"""What slots tell the live feed (``common.events``) after the commit: bookings made
or cancelled, and changes of a slot's numbers.
"""

from __future__ import annotations

from datetime import datetime

from common import events
from slots.models import Booking, Slot


def record_booking_event(kind: str, booking: Booking, slot: Slot, now: datetime) -> None:
    """Tell the live feed (after the commit) that ``booking`` was made or cancelled."""
    events.record(
        events.live_event(
            kind,
            slot.market_point_id,
            slot.market_point.code,
            now,
            slot_id=slot.id,
            booking_id=booking.id,
        )
    )


def record_slot_change(kind: str, slot: Slot, now: datetime, **extra: object) -> None:
    """Tell the live feed (after the commit) that ``slot``'s numbers changed: ``kind``
    ``no_show``, ``waiting_list`` (``action`` joined, left or expired) or
    ``slot_closed``; ``extra`` are more JSON-safe fields (no personal data)."""
    events.record(
        events.live_event(
            kind, slot.market_point_id, slot.market_point.code, now, slot_id=slot.id, **extra
        )
    )

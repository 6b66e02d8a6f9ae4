"""How many bookings came through each channel (issue 17 §5: admins see a count per
channel on the overview)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from extensions import db
from slots.models import BOOKING_CHANNELS, Booking


def bookings_per_channel(now: datetime, days: int = 7) -> dict[str, int]:
    """Count the bookings made in the ``days`` days before ``now`` (aware UTC), per
    ``Booking.channel``: every channel of BOOKING_CHANNELS (zero included), then any
    other value found, in that order."""
    counts = dict.fromkeys(BOOKING_CHANNELS, 0)
    rows = db.session.execute(
        select(Booking.channel, func.count(Booking.id))
        .where(Booking.created_at >= now - timedelta(days=days))
        .group_by(Booking.channel)
    )
    counts.update({channel: count for channel, count in rows})
    return counts

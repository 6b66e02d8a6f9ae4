"""The check-in window: when a slot's gate admits its bookings.

Rule (DESIGN.md, "Check-in rules"; "Slot"; issue 15 part 2): the gate admits a
booking from CHECKIN_EARLY_MINUTES before its arrival time (``booking.arrive_at``, the
start of its arrival wave, ``slots.waves``; the slot's start when not given) until
CHECKIN_LATE_MINUTES after the slot's end. The scan rules (``checkin.scanning``), the
offline gate's snapshot (``checkin.offline``) and the no-show sweep
(``slots.service.expire_past_slots``: the slot's end only) all take the window from
here. It lives on the slots side because ``slots`` may not
import ``checkin``, while ``checkin`` may import ``slots``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from common.timeutil import local_date


class _Timed(Protocol):
    starts_at: datetime
    ends_at: datetime


def grace_minutes(settings: Mapping[str, Any]) -> tuple[int, int]:
    """Return (minutes the gate opens before a slot starts, minutes it stays open
    after the slot ends): CHECKIN_EARLY_MINUTES and CHECKIN_LATE_MINUTES of
    ``settings`` (the app's config)."""
    return settings["CHECKIN_EARLY_MINUTES"], settings["CHECKIN_LATE_MINUTES"]


def checkin_window(
    slot: _Timed, settings: Mapping[str, Any], arrive_at: datetime | None = None
) -> tuple[datetime, datetime]:
    """Return (opens_at, closes_at), aware UTC: from ``arrive_at`` (default the slot's
    start) less CHECKIN_EARLY_MINUTES to the slot's end plus CHECKIN_LATE_MINUTES. The
    gate admits at ``opens_at <= now <= closes_at``.

    Args: slot, anything with ``starts_at`` and ``ends_at`` (aware UTC), such as a
      Slot or a SlotSummary; settings, the app's config; arrive_at, the booking's
      arrival time (aware UTC; issue 15), None for the slot's own window.
    """
    early, late = grace_minutes(settings)
    first = arrive_at or slot.starts_at
    return first - timedelta(minutes=early), slot.ends_at + timedelta(minutes=late)


def closed_for_ends_by(now: datetime, settings: Mapping[str, Any]) -> datetime:
    """Return the latest slot end (aware UTC) whose check-in window has closed by
    ``now``: a slot ending at or before it has ``checkin_window(...)[1] <= now``.
    The same window, as one bound for SQL filters over many slots."""
    _early, late = grace_minutes(settings)
    return now - timedelta(minutes=late)


def window_refusal(
    slot: _Timed,
    now: datetime,
    tz_name: str,
    settings: Mapping[str, Any],
    arrive_at: datetime | None = None,
) -> str:
    """Return why ``slot``'s gate does not admit at ``now``, or "" inside its window.

    Args: slot (aware UTC ``starts_at``/``ends_at``), now (aware UTC), tz_name, the
      market point's zone (days are local), settings, the app's config (the grace),
      arrive_at, the booking's arrival time (aware UTC), as ``checkin_window``.
    Returns: "" when ``opens_at <= now <= closes_at``; ``too_late`` after the window
      has closed, on any later day (a scan after midnight of a slot that ended near
      midnight included: the resident missed it, and that is the truth to tell;
      issue 14 item 6a); ``not_today`` before the window opens on an earlier local
      day (the booking is for another day); ``too_early`` before it opens on the
      slot's own day. The offline gate (``static/gate/window.js``) applies the same order.
    """
    opens, closes = checkin_window(slot, settings, arrive_at)
    if opens <= now <= closes:
        return ""
    if now > closes:
        return "too_late"
    if local_date(slot.starts_at, tz_name) != local_date(now, tz_name):
        return "not_today"
    return "too_early"

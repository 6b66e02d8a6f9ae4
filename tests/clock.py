"""Fixed local times for tests whose outcome depends on the time of day.

A slot that runs "now" ends near midnight when the suite runs late in the evening, and
"31 minutes after its end" is then tomorrow; a test that means "too late" takes its
slot at a fixed local hour instead.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from common.timeutil import utcnow

JAKARTA = ZoneInfo("Asia/Jakarta")


def now_local() -> datetime:
    """The test clock's now in Asia/Jakarta (aware): the one "now" of tests that
    compute "today" or "tomorrow" themselves (``tests/conftest.py`` starts the clock)."""
    return utcnow().astimezone(JAKARTA)


def today_local(days: int = 0) -> date:
    """The test clock's local (Asia/Jakarta) date, ``days`` later."""
    return (now_local() + timedelta(days=days)).date()


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    """Return tomorrow (Asia/Jakarta) at ``hour:minute`` local time, an aware instant."""
    day = today_local(1)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=JAKARTA)

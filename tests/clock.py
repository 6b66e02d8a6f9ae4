"""Fixed local times for tests whose outcome depends on the time of day.

A slot that runs "now" ends near midnight when the suite runs late in the evening, and
"31 minutes after its end" is then tomorrow; a test that means "too late" takes its
slot at a fixed local hour instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

JAKARTA = ZoneInfo("Asia/Jakarta")


def tomorrow_at(hour: int, minute: int = 0) -> datetime:
    """Return tomorrow (Asia/Jakarta) at ``hour:minute`` local time, an aware instant."""
    day = (datetime.now(JAKARTA) + timedelta(days=1)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=JAKARTA)

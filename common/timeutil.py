"""Time rules: instants are UTC and timezone-aware; days belong to a market point's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator

UTC = UTC


# The app reads its clock here and nowhere else (issue 14 item 6b). Tests start it at a
# fixed instant (``start_clock``) and it ticks with real elapsed time from there, so
# an outcome never depends on the hour the suite runs at. Zero outside tests.
_offset = timedelta(0)


def utcnow() -> datetime:
    """Return the current instant as an aware UTC datetime (the test clock's, when a
    test started one with ``start_clock``)."""
    return datetime.now(UTC) + _offset


def parse_test_clock(text: str) -> tuple[datetime, float | None]:
    """Parse ANTRI_TEST_CLOCK: an aware ISO 8601 instant, optionally ``@<unix
    seconds>``, the real time at which the clock read that instant (so processes a
    test starts later share its clock exactly; without it the clock reads the instant
    when the process starts).

    Returns: (aware UTC instant, real unix seconds or None).
    Raises: ValueError for a naive or malformed instant or a bad anchor.
    """
    instant_text, _, anchor = text.strip().partition("@")
    instant = datetime.fromisoformat(instant_text)
    if instant.tzinfo is None:
        raise ValueError("ANTRI_TEST_CLOCK needs a UTC offset, e.g. 2026-12-03T23:50:00+07:00")
    return instant.astimezone(UTC), float(anchor) if anchor else None


def start_clock(instant: datetime, at_real: float | None = None) -> None:
    """Tests only: make ``utcnow`` read ``instant`` (aware) at real unix time
    ``at_real`` (default: now), then tick with real time. ``config.py`` refuses the
    setting that leads here (ANTRI_TEST_CLOCK) in production."""
    global _offset
    real = datetime.fromtimestamp(at_real, UTC) if at_real is not None else datetime.now(UTC)
    _offset = instant.astimezone(UTC) - real


def zone(name: str) -> ZoneInfo:
    """Return the IANA zone ``name``.

    Raises: ValueError when the name is not a known IANA zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}") from None


def parse_day(text: str) -> date:
    """Parse a calendar date ``YYYY-MM-DD`` between the years 2000 and 2100.

    Raises: ValueError for another format or year (far dates overflow zone maths).
    """
    day = date.fromisoformat(text)
    if not 2000 <= day.year <= 2100 or len(text) != 10:
        raise ValueError(f"date out of range: {text!r}")
    return day


def local_day_bounds(day: date, tz_name: str) -> tuple[datetime, datetime]:
    """Return the UTC instants ``[start, end)`` of local calendar ``day`` in ``tz_name``.

    A day is not always 24 hours (DST elsewhere), so both ends come from the zone.
    """
    tz = zone(tz_name)
    start = datetime.combine(day, time(0, 0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_date(instant: datetime, tz_name: str) -> date:
    """Return the calendar date of the aware ``instant`` in zone ``tz_name``."""
    return instant.astimezone(zone(tz_name)).date()


def local_instant(day: date, clock: time, tz_name: str) -> datetime:
    """Return the UTC instant of wall-clock ``clock`` on ``day`` in ``tz_name``."""
    return datetime.combine(day, clock, tzinfo=zone(tz_name)).astimezone(UTC)


def local_text(instant: datetime, tz_name: str, fmt: str = "%H:%M") -> str:
    """Return the aware ``instant`` as wall-clock text in zone ``tz_name``
    (``strftime`` format ``fmt``, default ``HH:MM``)."""
    return instant.astimezone(zone(tz_name)).strftime(fmt)


class UTCDateTime(TypeDecorator):
    """A DateTime column that only accepts aware datetimes and always returns UTC.

    SQLite has no timezone type, so values are stored there as naive UTC text; on
    PostgreSQL as ``timestamptz``. Either way Python sees aware UTC datetimes.
    Raises ValueError on binding a naive datetime, which would be ambiguous.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC instant is required")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# One date style per language (issue 14 item 12): every page, and the assisted-booking
# list, writes days and times through these, never through strftime. Indonesian readers
# expect the weekday first with a comma and an Indonesian month ("Kamis, 4 Des 2026");
# English reads "Thu 4 Dec 2026". Clocks are 24-hour "09:00" in both: the gate's offline
# answers, the ticket and the messages already print that form.
DAY_PATTERNS = {"id": "EEEE, d MMM y", "en": "EEE d MMM y"}
# Days picked from a row of buttons: the same style without the year.
SHORT_DAY_PATTERNS = {"id": "EEE, d MMM", "en": "EEE d MMM"}
CLOCK_FORMAT = "%H:%M"


def _language(locale: str | None) -> str:
    """``locale`` (or the request's, else Indonesian) reduced to a key of DAY_PATTERNS."""
    if locale is None:
        from flask_babel import get_locale

        try:
            locale = str(get_locale() or "id")
        except RuntimeError:  # outside an app context: the default language
            locale = "id"
    language = str(locale).split("_")[0].split("-")[0]
    return language if language in DAY_PATTERNS else "id"


def day_text(
    value: date | datetime,
    tz_name: str | None = None,
    *,
    short: bool = False,
    locale: str | None = None,
) -> str:
    """Write a calendar day in the one style of its language (issue 14 item 12).

    Args: value, a date, or an aware instant whose day is taken in zone ``tz_name``
      (required then); short, drop the year (day buttons); locale, ``id``/``en``
      (default: the request's language, Indonesian outside a request).
    Returns: e.g. ``Kamis, 4 Des 2026`` (id) or ``Thu 4 Dec 2026`` (en).
    Raises: ValueError for an instant without ``tz_name`` or an unknown zone.
    """
    from babel.dates import format_date

    if isinstance(value, datetime):
        if tz_name is None:
            raise ValueError("an instant needs the zone its day is read in")
        value = value.astimezone(zone(tz_name)).date()
    language = _language(locale)
    patterns = SHORT_DAY_PATTERNS if short else DAY_PATTERNS
    return format_date(value, patterns[language], locale=language)


def clock_text(
    instant: datetime | time, tz_name: str | None = None, *, seconds: bool = False
) -> str:
    """Write a wall-clock time, 24-hour ``09:00`` (``09:00:05`` with seconds), in every
    language (issue 14 item 12).

    Args: instant, an aware instant read in zone ``tz_name``, or a ``time`` of day
      written as it is (a schedule's hours).
    Raises: ValueError for an instant without ``tz_name`` or an unknown zone.
    """
    fmt = CLOCK_FORMAT + (":%S" if seconds else "")
    if isinstance(instant, time):
        return instant.strftime(fmt)
    if tz_name is None:
        raise ValueError("an instant needs the zone its clock is read in")
    return instant.astimezone(zone(tz_name)).strftime(fmt)


def when_text(
    instant: datetime,
    tz_name: str,
    *,
    seconds: bool = False,
    zone_name: bool = False,
    locale: str | None = None,
) -> str:
    """Write an instant as its day and clock in zone ``tz_name``: ``Kamis, 4 Des 2026 09:00``
    (``... 09:00 WIB`` with ``zone_name``), in the style of ``day_text`` and ``clock_text``
    (issue 14 item 12). Raises ValueError for an unknown zone."""
    day = day_text(instant, tz_name, locale=locale)
    text = f"{day} {clock_text(instant, tz_name, seconds=seconds)}"
    if zone_name:
        text += " " + instant.astimezone(zone(tz_name)).strftime("%Z")
    return text

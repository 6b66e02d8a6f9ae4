"""Who counts as elderly in a ballot (issue 16 §3): residents aged ELDERLY_AGE (60) or
more on the ballot's date, by the birth date in their NIK (digits 7-12, DDMMYY; a
woman's day has 40 added). Python's answer (``is_elderly``) and the bounds the
one-statement entry compares in SQL (``elderly_bounds``) are kept side by side so they
cannot drift apart."""

from __future__ import annotations

from datetime import date

ELDERLY_AGE = 60  # years, on the ballot's date (issue 16 §3)


def birth_date(nik: str, on_day: date) -> date | None:
    """The birth date in NIK digits 7-12 (DDMMYY; a woman's day has 40 added).

    The two-digit year is read in the century that puts the birth on or before
    ``on_day`` (2000+YY when that is not after it, else 1900+YY): so a NIK of YY=30
    read in 2026 is 1930. A person over 100 is read as a child (rare; documented).
    Returns None for digits that are no date (``validate_nik`` refuses those first).
    """
    dd, mm, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    if dd > 40:
        dd -= 40
    for century in (2000, 1900):
        try:
            born = date(century + yy, mm, dd)
        except ValueError:
            return None
        if born <= on_day:
            return born
    return None


def is_elderly(nik: str, on_day: date) -> bool:
    """True when the NIK's holder is ELDERLY_AGE (60) or older on local date ``on_day``
    (issue 16 §3: the priority share)."""
    born = birth_date(nik, on_day)
    if born is None:
        return False
    age = on_day.year - born.year - ((on_day.month, on_day.day) < (born.month, born.day))
    return age >= ELDERLY_AGE


def _sixtieth(born: date) -> date:
    """The first day on which someone born on ``born`` is ELDERLY_AGE by
    ``is_elderly``'s count: the birthday ELDERLY_AGE years on (1 March for a 29
    February birth in a common year)."""
    try:
        return born.replace(year=born.year + ELDERLY_AGE)
    except ValueError:
        return date(born.year + ELDERLY_AGE, 3, 1)


def elderly_bounds(nik: str) -> tuple[date | None, date | None, date | None]:
    """``is_elderly(nik, day)`` for a ballot day not known yet, as three dates for the
    one-statement entry (``_ELDERLY_SQL``): (born, sixty, sixty_1900), the birth date
    read in the 2000s, the day its holder turns ELDERLY_AGE, and that day for the
    birth read in the 1900s (None where no such date exists). Elderly on ``day`` iff
    ``day >= sixty``, or ``day < born`` (read in the 1900s then) and
    ``day >= sixty_1900``; tests/ballots/test_entering_paths.py holds it to
    ``is_elderly``."""
    dd, mm, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    if dd > 40:
        dd -= 40
    try:
        born = date(2000 + yy, mm, dd)
    except ValueError:
        return None, None, None
    try:
        sixty_1900 = _sixtieth(date(1900 + yy, mm, dd))
    except ValueError:
        sixty_1900 = None
    return born, _sixtieth(born), sixty_1900

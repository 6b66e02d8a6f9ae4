"""Fixtures of the ballot tests: a point-day of slots two days ahead and a ballot over
them whose window is open now (the test clock), and NIKs of a chosen age."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest

from common.timeutil import local_date, utcnow
from extensions import db

_serial = count(1)
PHONE = "081234567890"


@pytest.fixture
def make_nik():
    """``make_nik(born="120590")``: a fresh valid NIK (Kec. Senen) born on DDMMYY."""

    def make(born: str = "120590") -> str:
        return f"317104{born}{next(_serial) % 9999 + 1:04d}"

    return make


@pytest.fixture
def ballot_day(ctx, make_point, make_slot):
    """Four slots of 10 places at JKT-900 two days ahead, 10:00-12:00 WIB; returns
    (point, slots)."""
    point = make_point(code="JKT-900")
    slots = [make_slot(capacity=10, starts_in=2 * 1440 + 30 * i, point=point) for i in range(4)]
    return point, slots


@pytest.fixture
def open_ballot(ballot_day):
    """A ballot over ``ballot_day`` open from a minute ago for an hour; returns it."""
    from ballots.rounds import create_ballot

    point, slots = ballot_day
    now = utcnow()
    ballot = create_ballot(
        point.code,
        local_date(slots[0].starts_at, point.timezone),
        now - timedelta(minutes=1),
        now + timedelta(hours=1),
    )
    db.session.commit()
    return ballot

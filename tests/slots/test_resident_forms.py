"""The residents' forms (issue 14 items 7 to 11): what a form keeps after an error,
every fault beside its field, a full slot's link, the day a market page opens on, and
a cancel that asks first. Pages through the test client, on a fixed clock."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from extensions import db
from slots.models import Booking
from tests.fixed_clock import freeze

JAKARTA = ZoneInfo("Asia/Jakarta")
# A fixed evening, after the day's last slot: every day below is derived from it.
EVENING = datetime(2031, 3, 10, 21, 0, tzinfo=JAKARTA)


def _input(page: str, name: str) -> str:
    """The ``<input>`` tag of field ``name`` in ``page``."""
    match = re.search(rf'<input[^>]*\bname="{name}"[^>]*>', page)
    assert match, f"no input {name!r}"
    return match.group(0)


def _value(page: str, name: str) -> str:
    match = re.search(r'\bvalue="([^"]*)"', _input(page, name))
    return match.group(1) if match else ""


# Item 7: keep what was typed, except a field that was itself wrong.


def test_a_wrong_phone_keeps_the_nik_and_name(client, make_slot, nik, caplog):
    caplog.set_level(logging.DEBUG)
    slot = make_slot(capacity=4, starts_in=180)
    person = nik()
    page = client.post(
        f"/slots/{slot.id}/book",
        data={"name": "Ani Lestari", "nik": person, "phone": "12345"},
    )
    assert page.status_code == 422
    assert _value(page.text, "nik") == person
    assert _value(page.text, "name") == "Ani Lestari"
    assert _value(page.text, "phone") == ""  # the wrong field is cleared
    # The NIK is echoed only into its field of this no-store page, never elsewhere.
    assert page.text.count(person) == 1
    assert page.headers["Cache-Control"] == "private, no-store"
    assert person not in caplog.text


def test_the_per_person_limit_keeps_every_field(client, make_slot, make_point, nik):
    first = make_slot(capacity=4, starts_in=180)
    other = make_slot(capacity=4, starts_in=240, point=make_point(code="JKT-901"))
    person = nik()
    data = {"name": "Ani Lestari", "nik": person, "phone": "0812 3456 7890"}
    assert client.post(f"/slots/{first.id}/book", data=data).status_code == 302
    page = client.post(f"/slots/{other.id}/book", data=data)
    assert page.status_code == 409
    assert re.search(r'role="alert" data-error="limit_reached"', page.text)
    assert (_value(page.text, "nik"), _value(page.text, "phone")) == (person, "0812 3456 7890")
    assert page.text.count(person) == 1
    assert 'aria-invalid="true"' not in page.text  # not about one field


def test_a_wrong_nik_is_cleared(client, make_slot):
    slot = make_slot(capacity=4, starts_in=180)
    typed = "3171041205900000"  # serial 0000: not a NIK
    page = client.post(
        f"/slots/{slot.id}/book",
        data={"name": "Ani Lestari", "nik": typed, "phone": "081234567890"},
    )
    assert page.status_code == 422
    assert _value(page.text, "nik") == "" and typed not in page.text
    assert _value(page.text, "phone") == "081234567890"


def test_the_waiting_list_form_keeps_the_nik_too(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    client.post(
        f"/slots/{slot.id}/book", data={"name": "Budi", "nik": nik(), "phone": "081234567890"}
    )
    person = nik()
    page = client.post(
        f"/slots/{slot.id}/waiting-list", data={"name": "Ani Lestari", "nik": person, "phone": "1"}
    )
    assert page.status_code == 422 and _value(page.text, "nik") == person


# Item 8: every fault at once, beside its field.


def test_every_fault_is_shown_beside_its_field(client, make_slot, make_point):
    point = make_point(code="JKT-902", household_limit=True)
    slot = make_slot(capacity=4, starts_in=180, point=point)
    page = client.post(
        f"/slots/{slot.id}/book",
        data={"name": "A", "nik": "123", "phone": "555", "kk": "9"},
    )
    assert page.status_code == 422
    for field, code in (
        ("name", "invalid_name"),
        ("nik", "invalid_nik"),
        ("phone", "invalid_phone"),
        ("kk", "invalid_kk"),
    ):
        tag = _input(page.text, field)
        assert 'aria-invalid="true"' in tag, field
        assert f'aria-describedby="{field}-error"' in tag, field
        assert re.search(
            rf'<p class="field-error" id="{field}-error" data-error="{code}">', page.text
        )
    assert "autofocus" in _input(page.text, "name")
    assert all("autofocus" not in _input(page.text, f) for f in ("nik", "phone", "kk"))
    assert 'role="alert"' not in page.text  # no single fault above the form
    assert "NIK harus terdiri dari 16 digit." in page.text  # the rule's own message


def test_focus_goes_to_the_first_faulty_field(client, make_slot, nik):
    slot = make_slot(capacity=4, starts_in=180)
    page = client.post(
        f"/slots/{slot.id}/book", data={"name": "Ani Lestari", "nik": nik(), "phone": "1"}
    )
    assert "autofocus" in _input(page.text, "phone")
    assert "aria-invalid" not in _input(page.text, "name") + _input(page.text, "nik")


def test_field_faults_come_before_a_full_slot(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    client.post(
        f"/slots/{slot.id}/book", data={"name": "Budi", "nik": nik(), "phone": "081234567890"}
    )
    page = client.post(
        f"/slots/{slot.id}/book", data={"name": "Ani Lestari", "nik": "1", "phone": "1"}
    )
    assert page.status_code == 422
    assert 'data-error="invalid_nik"' in page.text and 'data-error="invalid_phone"' in page.text


# Item 9: a full slot's booking link offers the waiting list.


def test_a_full_slots_booking_link_offers_the_waiting_list(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    client.post(
        f"/slots/{slot.id}/book", data={"name": "Budi", "nik": nik(), "phone": "081234567890"}
    )
    page = client.get(f"/slots/{slot.id}/book")
    assert page.status_code == 303
    assert page.headers["Location"] == f"/slots/{slot.id}/waiting-list"
    join = client.get(page.headers["Location"])
    assert join.status_code == 200
    assert 'id="slot-full"' in join.text and 'name="nik"' in join.text


def test_a_slot_with_room_still_shows_the_form(client, make_slot):
    slot = make_slot(capacity=1, starts_in=180)
    page = client.get(f"/slots/{slot.id}/book")
    assert page.status_code == 200 and 'name="nik"' in page.text
    # and its waiting-list link sends the resident to the booking form
    join = client.get(f"/slots/{slot.id}/waiting-list")
    assert join.status_code == 303 and join.headers["Location"] == f"/slots/{slot.id}/book"


# Item 10: the market page opens on the first day with bookable slots.


def _days(page: str) -> dict[str, int]:
    return {
        day: int(count)
        for day, count in re.findall(r'data-day="([0-9-]{10})" data-count="(\d+)"', page)
    }


def test_the_market_page_opens_on_the_first_day_with_bookable_slots(
    client, make_slot, make_point, monkeypatch
):
    point = make_point()
    morning = EVENING.replace(hour=8).astimezone(ZoneInfo("UTC"))
    make_slot(capacity=5, starts_in=0, point=point, now=morning)  # today, over by 21:00
    for hour in (8, 9, 10):  # tomorrow
        make_slot(capacity=5, starts_in=24 * 60 + (hour - 8) * 60, point=point, now=morning)
    make_slot(capacity=5, starts_in=3 * 24 * 60, point=point, now=morning)  # in three days
    freeze(monkeypatch, EVENING)
    page = client.get(f"/points/{point.code}")
    assert page.status_code == 200
    assert 'data-date="2031-03-11"' in page.text  # tomorrow, not today
    assert page.text.count('class="card slot"') == 3
    days = _days(page.text)
    assert days["2031-03-10"] == 0 and days["2031-03-11"] == 3
    assert days["2031-03-12"] == 0 and days["2031-03-13"] == 1
    assert len(days) == 7  # BOOKING_DAYS_AHEAD
    # an asked-for day is still shown
    asked = client.get(f"/points/{point.code}?date=2031-03-10")
    assert 'data-date="2031-03-10"' in asked.text and 'class="card slot"' not in asked.text


def test_the_market_page_opens_on_today_while_today_has_a_slot(
    client, make_slot, make_point, monkeypatch
):
    point = make_point()
    morning = EVENING.replace(hour=8).astimezone(ZoneInfo("UTC"))
    make_slot(capacity=5, starts_in=14 * 60, point=point, now=morning)  # today 22:00
    make_slot(capacity=5, starts_in=24 * 60, point=point, now=morning)  # tomorrow
    freeze(monkeypatch, EVENING)
    page = client.get(f"/points/{point.code}")
    assert 'data-date="2031-03-10"' in page.text
    assert _days(page.text)["2031-03-10"] == 1


# Item 11: cancelling asks first, with or without JavaScript.


def _ticket(client, slot, nik) -> str:
    done = client.post(
        f"/slots/{slot.id}/book",
        data={"name": "Ani Lestari", "nik": nik(), "phone": "081234567890"},
    )
    return done.headers["Location"].split("?")[0]


def test_one_tap_does_not_cancel(client, make_slot, nik):
    slot = make_slot(capacity=2, starts_in=24 * 60)
    ticket = _ticket(client, slot, nik)
    page = client.get(ticket).text
    assert "confirm(" not in page  # no reliance on window.confirm
    assert re.search(rf'<a [^>]*href="{re.escape(ticket)}/cancel"', page)
    one_tap = client.post(f"{ticket}/cancel")
    assert one_tap.status_code == 303 and one_tap.headers["Location"] == f"{ticket}/cancel"
    db.session.expire_all()
    assert db.session.scalar(select(Booking.status)) == "confirmed"

    ask = client.get(f"{ticket}/cancel")
    assert ask.status_code == 200 and ask.headers["Cache-Control"] == "private, no-store"
    assert 'name="confirm" type="hidden" value="yes"' in ask.text
    assert f'href="{ticket}"' in ask.text  # keep it: back to the ticket
    done = client.post(f"{ticket}/cancel", data={"confirm": "yes"})
    assert done.status_code == 302 and done.headers["Location"] == ticket
    db.session.expire_all()
    assert db.session.scalar(select(Booking.status)) == "cancelled"


def test_the_cancel_page_of_a_booking_that_cannot_be_cancelled(client, make_slot, nik):
    slot = make_slot(capacity=2, starts_in=30)  # inside the cut-off
    ticket = _ticket(client, slot, nik)
    ask = client.get(f"{ticket}/cancel")
    assert ask.status_code == 302 and ask.headers["Location"] == ticket
    assert client.get(f"{ticket[:-4]}0000/cancel").status_code == 404


@pytest.mark.parametrize("field", ["name", "nik", "phone"])
def test_an_overlong_field_is_a_fault_not_a_500(client, make_slot, field):
    slot = make_slot(capacity=2, starts_in=180)
    data = {"name": "Ani Lestari", "nik": "3171041205900001", "phone": "081234567890"}
    page = client.post(f"/slots/{slot.id}/book", data={**data, field: "9" * 5000})
    assert page.status_code == 422 and 'aria-invalid="true"' in _input(page.text, field)

"""Arrival waves inside a slot (issue 15 part 2), on both databases: the rule, every
path that gives a booking a place, the surfaces that tell the arrival time, the gate's
window from it, and the point page's chart."""

from __future__ import annotations

import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import select

from checkin.occupancy import point_day
from checkin.offline import gate_snapshot
from common.audit import CLI
from common.timeutil import local_date, utcnow
from extensions import db
from slots.booking import book_slot
from slots.models import Booking
from slots.staff import book_for_resident, move_booking
from slots.waiting import join_waiting_list
from slots.waves import open_waves, wave_of, wave_starts
from slots.window import checkin_window

JAKARTA = ZoneInfo("Asia/Jakarta")
PHONE = "081234567890"


class _Slot:
    def __init__(self, starts_at, minutes):
        self.starts_at, self.ends_at = starts_at, starts_at + timedelta(minutes=minutes)


T0 = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)  # 07:00 WIB


def _minutes(instants, start):
    return [int((at - start).total_seconds() // 60) for at in instants]


# The rule's pieces, without a database ---------------------------------------------


def test_a_slot_is_divided_into_waves_from_its_start_the_last_may_be_shorter():
    assert _minutes(wave_starts(_Slot(T0, 30), 10), T0) == [0, 10, 20]
    assert _minutes(wave_starts(_Slot(T0, 25), 10), T0) == [0, 10, 20]  # last: 5 minutes
    assert _minutes(wave_starts(_Slot(T0, 5), 10), T0) == [0]
    assert wave_starts(_Slot(T0, 30), 0) == [T0]  # waves off


def test_inside_a_running_slot_only_waves_not_begun_are_open_else_the_last():
    slot = _Slot(T0, 30)
    assert _minutes(open_waves(slot, T0 - timedelta(hours=1), 10), T0) == [0, 10, 20]
    assert _minutes(open_waves(slot, T0, 10), T0) == [10, 20]  # the first has begun
    assert _minutes(open_waves(slot, T0 + timedelta(minutes=12), 10), T0) == [20]
    assert _minutes(open_waves(slot, T0 + timedelta(minutes=25), 10), T0) == [20]  # none left
    assert open_waves(slot, T0 + timedelta(minutes=25), 0) == [T0]


def test_wave_of_an_instant():
    slot = _Slot(T0, 30)
    assert [wave_of(T0 + timedelta(minutes=m), slot, 10) for m in (-5, 0, 9, 10, 29, 45)] == [
        0,
        0,
        0,
        1,
        2,
        2,
    ]


@pytest.mark.parametrize(
    ("raw", "value"), [(None, 10), ("0", 0), (" 15 ", 15), ("-1", None), ("ten", None)]
)
def test_the_wave_length_setting(tmp_path, raw, value):
    from config import ConfigError, load_config

    env = {} if raw is None else {"ARRIVAL_WAVE_MINUTES": raw}
    if value is None:
        with pytest.raises(ConfigError, match="ARRIVAL_WAVE_MINUTES"):
            load_config(tmp_path, env)
    else:
        assert load_config(tmp_path, env)["ARRIVAL_WAVE_MINUTES"] == value


# Booking paths --------------------------------------------------------------------


def _path(url: str) -> str:
    """The path of an absolute link (links are on PUBLIC_BASE_URL)."""
    return urlsplit(url).path


def _book(client, slot_id, nik, phone=PHONE, **extra):
    return client.post(
        "/api/v1/bookings",
        json={"slot_id": slot_id, "name": "Siti Aminah", "nik": nik, "phone": phone, **extra},
    )


def _arrivals(slot):
    db.session.expire_all()
    rows = db.session.scalars(
        select(Booking.arrive_at)
        .where(Booking.slot_id == slot.id, Booking.status == "confirmed")
        .order_by(Booking.id)
    )
    return _minutes(rows, slot.starts_at)


def test_thirty_bookings_arrive_ten_ten_ten_earliest_wave_on_a_tie(client, make_slot, nik):
    slot = make_slot(capacity=30, starts_in=180, minutes=30)
    answers = [_book(client, slot.id, nik()) for _ in range(30)]
    assert {a.status_code for a in answers} == {201}
    arrivals = _arrivals(slot)
    assert arrivals[:4] == [0, 10, 20, 0]  # fewest first, the earliest on a tie
    assert Counter(arrivals) == {0: 10, 10: 10, 20: 10}
    # The answer tells it, as an ISO UTC instant.
    second = datetime.fromisoformat(answers[1].json["arrive_at"])
    assert second == slot.starts_at + timedelta(minutes=10) and second.utcoffset() == timedelta(0)


def test_a_booking_while_the_slot_runs_gets_a_wave_not_begun(client, make_slot, nik):
    running = make_slot(capacity=10, starts_in=-5, minutes=30)  # waves -5, +5, +15
    assert [_book(client, running.id, nik()).status_code for _ in range(3)] == [201] * 3
    assert _arrivals(running) == [10, 20, 10]
    nearly_over = make_slot(capacity=10, starts_in=-25, minutes=30)  # none left: the last
    assert _book(client, nearly_over.id, nik()).status_code == 201
    assert _arrivals(nearly_over) == [20]


def test_a_cancellation_refills_the_emptiest_wave(client, make_slot, nik):
    slot = make_slot(capacity=10, starts_in=180, minutes=30)
    booked = [_book(client, slot.id, nik(), phone=f"08121111{i:04d}").json for i in range(4)]
    assert _arrivals(slot) == [0, 10, 20, 0]
    cancel = client.post(
        f"/api/v1/bookings/{booked[2]['code']}/cancel", json={"phone": "081211110002"}
    )
    assert cancel.status_code == 200
    again = _book(client, slot.id, nik()).json
    assert datetime.fromisoformat(again["arrive_at"]) == slot.starts_at + timedelta(minutes=20)


def test_promotion_move_and_assisted_booking_get_a_wave(app, ctx, client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=180, minutes=30)
    booked = [_book(client, slot.id, nik(), phone=f"08122222{i:04d}").json for i in range(3)]
    join_waiting_list(slot.id, "Wati", nik(), "081233334444")
    db.session.commit()
    # The booking in the second wave cancels: its place goes to the waiting resident,
    # who gets the emptiest wave, the second.
    cancel = client.post(
        f"/api/v1/bookings/{booked[1]['code']}/cancel", json={"phone": "081222220001"}
    )
    assert cancel.status_code == 200
    promoted = db.session.scalar(
        select(Booking).where(Booking.slot_id == slot.id, Booking.name == "Wati")
    )
    assert promoted.arrive_at == slot.starts_at + timedelta(minutes=10)

    # A move takes the emptiest wave of its new slot.
    other = make_slot(capacity=5, starts_in=240, minutes=30, point=slot.market_point)
    _book(client, other.id, nik())
    moved = move_booking(booked[0]["code"], other.id, CLI)
    db.session.commit()
    assert moved.arrive_at == other.starts_at + timedelta(minutes=10)
    # ... and the wave it left is the emptiest of the old slot again.
    assert _book(client, slot.id, nik()).json["arrive_at"] == slot.starts_at.isoformat()

    # Assisted booking at the desk goes through the same rule.
    assisted = book_for_resident(other.id, ("Bu Ani", nik(), ""), "", "desk-1", CLI)
    db.session.commit()
    assert assisted.arrive_at == other.starts_at + timedelta(minutes=20)


def test_waves_off_everyone_arrives_at_the_slot_start(app, client, make_slot, nik, monkeypatch):
    monkeypatch.setitem(app.config, "ARRIVAL_WAVE_MINUTES", 0)
    slot = make_slot(capacity=5, starts_in=180, minutes=30)
    answers = [_book(client, slot.id, nik()).json for _ in range(3)]
    assert _arrivals(slot) == [0, 0, 0]
    assert {a["arrive_at"] for a in answers} == {slot.starts_at.isoformat()}
    running = make_slot(capacity=5, starts_in=-5, minutes=30)
    assert _book(client, running.id, nik()).status_code == 201
    assert _arrivals(running) == [0]


def test_the_booking_rule_is_the_same_when_called_directly(ctx, make_slot, nik):
    slot = make_slot(capacity=5, starts_in=180, minutes=20)  # waves 0 and 10
    made = [book_slot(slot.id, "Ani", nik(), PHONE) for _ in range(3)]
    db.session.commit()
    assert _minutes([b.arrive_at for b in made], slot.starts_at) == [0, 10, 0]


# Surfaces -------------------------------------------------------------------------


def test_arrive_at_in_lookup_ticket_pdf_ics_and_messages(client, make_slot, nik, app, tmp_path):
    slot = make_slot(capacity=5, starts_in=180, minutes=30)
    _book(client, slot.id, nik())
    booked = _book(client, slot.id, nik(), phone="081277778888").json
    arrive = slot.starts_at + timedelta(minutes=10)
    local = f"{arrive.astimezone(JAKARTA):%H:%M}"

    found = client.get(f"/api/v1/bookings/{booked['code']}?phone=081277778888")
    assert found.status_code == 200 and found.json["arrive_at"] == arrive.isoformat()

    page = client.get(_path(booked["ticket_url"]))
    assert page.status_code == 200
    assert f"Datang pukul {local}" in page.text
    assert f'data-arrive-at="{arrive.isoformat()}"' in page.text

    ics = client.get(_path(booked["ics_url"]))
    event = next(iter(Calendar.from_ical(ics.data).walk("VEVENT")))
    assert event.decoded("dtstart") == arrive and event.decoded("dtend") == slot.ends_at

    pdf = tmp_path / "ticket.pdf"
    pdf.write_bytes(client.get(_path(booked["pdf_url"])).data)
    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert f"Datang pukul {local}" in text

    from notify.messages import render_notice
    from slots.models import Notice

    notice = db.session.scalar(select(Notice).join(Booking).where(Booking.code == booked["code"]))
    assert f"datang pukul {local}." in render_notice(notice)
    booking = db.session.scalar(select(Booking).where(Booking.code == booked["code"]))
    booking.language = "en"
    assert f"arrive at {local}." in render_notice(notice)
    db.session.rollback()


# The gate -------------------------------------------------------------------------


@pytest.fixture
def gate(client, make_slot, make_user):
    slot = make_slot(capacity=10, starts_in=10, minutes=30)  # waves +10, +20, +30
    _, token = make_user("gate-waves@antri.test", "staff", slot.market_point)
    return slot, {"Authorization": f"Bearer {token}"}


def test_the_gate_admits_from_the_arrival_less_the_early_minutes(app, client, gate, nik):
    slot, headers = gate
    first, second = _book(client, slot.id, nik()).json, _book(client, slot.id, nik()).json
    # The first wave opens at +10 - 15 = now - 5: admitted.
    admitted = client.post("/api/v1/checkin", json={"code": first["code"]}, headers=headers)
    assert admitted.json["result"] == "admitted"
    # The second arrives at +20: its gate opens at +5; now is too early, and says when.
    early = client.post("/api/v1/checkin", json={"code": second["code"]}, headers=headers)
    arrive = slot.starts_at + timedelta(minutes=10)
    assert (early.json["result"], early.json["reason"]) == ("refused", "too_early")
    assert early.json["details"]["arrive_at"] == arrive.isoformat()
    assert early.json["booking"]["arrive_at"] == arrive.isoformat()
    assert f"datang pukul {arrive.astimezone(JAKARTA):%H:%M}" in early.json["message"]
    # The window of the one rule: arrival - 15 min to the slot's end + 30 min.
    opens, closes = checkin_window(slot, app.config, arrive)
    assert (opens, closes) == (arrive - timedelta(minutes=15), slot.ends_at + timedelta(minutes=30))
    # The offline gate gets each booking's arrival in its snapshot.
    snapshot = gate_snapshot(slot.market_point)
    by_code = {b["code"]: b for b in snapshot["bookings"]}
    assert by_code[second["code"]]["arrive_at"] == arrive.isoformat()
    assert by_code[first["code"]]["arrive_at"] == slot.starts_at.isoformat()


def test_an_offline_early_admission_becomes_a_too_early_conflict(client, gate, nik):
    slot, headers = gate
    _book(client, slot.id, nik())
    second = _book(client, slot.id, nik()).json
    scan = {
        "nonce": "w-1",
        "scanned_at": utcnow().isoformat(),
        "ticket": second["ticket"],
        "direction": "in",
        "local_result": "admitted",
    }
    synced = client.post(
        "/api/v1/checkin/sync", json={"device": "g", "scans": [scan]}, headers=headers
    )
    assert synced.status_code == 200
    assert synced.json["results"][0]["conflict"] == "too_early"


# The point page's chart -----------------------------------------------------------


def test_the_chart_counts_expected_arrivals_per_wave_against_check_ins(client, ctx, gate, nik):
    slot, headers = gate
    codes = [_book(client, slot.id, nik()).json["code"] for _ in range(5)]
    client.post("/api/v1/checkin", json={"code": codes[0]}, headers=headers)  # wave 1
    point = slot.market_point
    day = point_day(point, local_date(utcnow(), point.timezone))
    assert day.bucket_minutes == 10
    first = (slot.starts_at - day.start) // timedelta(minutes=10)
    assert day.expected[first : first + 3] == [2, 2, 1]
    assert sum(day.expected) == 5
    # The check-in happened now, before the slot: in the bucket of now.
    now_bucket = (utcnow() - day.start) // timedelta(minutes=10)
    assert day.arrivals[now_bucket] == 1 and sum(day.arrivals) == 1

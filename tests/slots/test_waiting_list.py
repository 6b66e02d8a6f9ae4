"""Waiting list: join a full slot, promotion in order within the limit, notices."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from common.timeutil import zone
from extensions import db
from slots.booking import book_slot
from slots.housekeeping import expire_past_slots
from slots.models import Booking, Notice, Slot, WaitingListEntry
from slots.waiting import join_waiting_list


# buffered=True makes the test client close each response, as a server does, which
# runs the notice delivery registered with call_on_close.
def _join(client, slot_id, nik, phone="081298765432"):
    return client.post(
        f"/api/v1/slots/{slot_id}/waiting-list",
        json={"name": "Rudi Hartono", "nik": nik, "phone": phone},
        buffered=True,
    )


def _book(client, slot_id, nik, phone="081234567890"):
    return client.post(
        "/api/v1/bookings",
        json={"slot_id": slot_id, "name": "Budi", "nik": nik, "phone": phone},
        buffered=True,
    )


def _cancel(client, code, phone="081234567890"):
    return client.post(f"/api/v1/bookings/{code}/cancel", json={"phone": phone}, buffered=True)


def test_join_only_a_full_slot_and_only_once(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    early = _join(client, slot.id, nik())
    assert early.status_code == 409 and early.json["error"] == "slot_not_full"
    _book(client, slot.id, nik())
    person = nik()
    joined = _join(client, slot.id, person)
    assert joined.status_code == 201
    assert (joined.json["status"], joined.json["position"]) == ("waiting", 1)
    second = _join(client, slot.id, nik())
    assert second.json["position"] == 2
    again = _join(client, slot.id, person)
    assert again.status_code == 409 and again.json["error"] == "already_waiting"


def test_a_freed_place_goes_to_the_first_in_line(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    holder = _book(client, slot.id, nik()).json
    first = _join(client, slot.id, nik(), phone="081211110001").json
    second = _join(client, slot.id, nik(), phone="081211110002").json
    assert _cancel(client, holder["code"]).json["status"] == "cancelled"

    promoted = client.get(f"/api/v1/waiting-list/{first['code']}?phone=081211110001").json
    assert promoted["status"] == "promoted" and promoted["position"] is None
    assert (
        promoted["booking"]["status"] == "confirmed" and len(promoted["booking"]["ticket"]) == 119
    )
    still = client.get(f"/api/v1/waiting-list/{second['code']}?phone=081211110002").json
    assert (still["status"], still["position"]) == ("waiting", 1)
    db.session.expire_all()
    assert db.session.get(Slot, slot.id).booked_count == 1  # the place moved, never freed
    listed = client.get(
        f"/api/v1/market-points/{slot.market_point.code}/slots",
        query_string={"date": slot.starts_at.astimezone(zone("Asia/Jakarta")).date()},
    ).json
    assert [s["remaining"] for s in listed if s["id"] == slot.id] == [0]

    # The promoted resident cancels: the place goes on to the next, not back to them.
    assert _cancel(client, promoted["booking"]["code"], "081211110001").status_code == 200
    after = client.get(f"/api/v1/waiting-list/{second['code']}?phone=081211110002").json
    assert after["status"] == "promoted"
    first_again = client.get(f"/api/v1/waiting-list/{first['code']}?phone=081211110001").json
    assert first_again["status"] == "promoted"  # not back on the list


def test_someone_over_the_limit_is_skipped(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    other = make_slot(capacity=5, starts_in=24 * 60)
    holder = _book(client, slot.id, nik()).json
    busy, patient = nik(), nik()
    busy_entry = _join(client, slot.id, busy, phone="081211110003").json
    _join(client, slot.id, patient, phone="081211110004")
    assert _book(client, other.id, busy).status_code == 201  # now over the limit
    _cancel(client, holder["code"])
    skipped = client.get(f"/api/v1/waiting-list/{busy_entry['code']}?phone=081211110003").json
    assert skipped["status"] == "skipped" and skipped["booking"] is None
    entries = db.session.execute(
        select(WaitingListEntry.phone, WaitingListEntry.status).order_by(WaitingListEntry.id)
    ).all()
    assert entries == [("+6281211110003", "skipped"), ("+6281211110004", "promoted")]


def test_nobody_waiting_gives_the_place_back(client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    holder = _book(client, slot.id, nik()).json
    entry = _join(client, slot.id, nik(), phone="081211110005").json
    left = client.post(
        f"/api/v1/waiting-list/{entry['code']}/leave", json={"phone": "081211110005"}
    )
    assert left.json["status"] == "left"
    again = client.post(
        f"/api/v1/waiting-list/{entry['code']}/leave", json={"phone": "081211110005"}
    )
    assert again.status_code == 409 and again.json["error"] == "not_waiting"
    _cancel(client, holder["code"])
    db.session.expire_all()
    assert db.session.get(Slot, slot.id).booked_count == 0


def test_expiry_marks_no_shows_and_ends_waiting(ctx, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    booking = book_slot(slot.id, "Sari", nik(), "081234567890")
    entry = join_waiting_list(slot.id, "Tono", nik(), "081234567891")
    db.session.commit()
    assert expire_past_slots(slot.ends_at + timedelta(minutes=29)) == (0, 1)
    assert expire_past_slots(slot.ends_at + timedelta(minutes=30)) == (1, 0)
    assert expire_past_slots(slot.ends_at + timedelta(minutes=31)) == (0, 0)
    db.session.commit()
    assert db.session.get(Booking, booking.id).status == "no_show"
    assert db.session.get(WaitingListEntry, entry.id).status == "expired"
    assert db.session.get(Slot, slot.id).booked_count == 0


def test_notices_go_out_once_each(app, client, make_slot, nik, tmp_path, monkeypatch):
    log_file = tmp_path / "notifications.jsonl"
    monkeypatch.setitem(app.config, "NOTIFY_LOG_FILE", str(log_file))
    slot = make_slot(capacity=1, starts_in=180)
    holder = _book(client, slot.id, nik()).json
    _join(client, slot.id, nik(), phone="081211110006")
    _cancel(client, holder["code"])
    lines = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    assert [(line["kind"], line["to"]) for line in lines] == [
        ("confirmation", "+6281234567890"),
        ("cancellation", "+6281234567890"),
        ("promotion", "+6281211110006"),
    ]
    assert "/tickets/" in lines[2]["text"] and "Antri" in lines[2]["text"]
    rows = db.session.execute(select(Notice.kind, Notice.status).order_by(Notice.id)).all()
    assert [tuple(row) for row in rows] == [
        ("confirmation", "sent"),
        ("cancellation", "sent"),
        ("promotion", "sent"),
    ]
    # Delivering again sends nothing more; at its time only the promoted booking, the
    # one still confirmed, gets a reminder.
    from notify.relay import deliver_pending

    assert deliver_pending() == 0
    assert deliver_pending(now=slot.starts_at - timedelta(minutes=60)) == 1
    lines = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    assert [(line["kind"], line["to"]) for line in lines[3:]] == [("reminder", "+6281211110006")]

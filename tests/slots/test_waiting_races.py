"""Races around the waiting list, and the fixes for what a tester found."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading

import pytest
from sqlalchemy import func, select

from extensions import db
from slots.models import Booking, IdempotencyKey, Notice, Slot, WaitingListEntry


def _post(client, url, body):
    return client.post(url, json=body, buffered=True)


def _book(client, slot_id, nik, phone="081234567890"):
    return _post(
        client,
        "/api/v1/bookings",
        {"slot_id": slot_id, "name": "Warga", "nik": nik, "phone": phone},
    )


def _join(client, slot_id, nik, phone):
    return _post(
        client,
        f"/api/v1/slots/{slot_id}/waiting-list",
        {"name": "Penunggu", "nik": nik, "phone": phone},
    )


def _together(app, calls):
    """Run each ``call(client)`` in its own thread, released at once; return answers."""
    barrier = threading.Barrier(len(calls))
    answers = [None] * len(calls)

    def run(i, call):
        with app.test_client() as client:
            barrier.wait()
            answers[i] = call(client)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.slow
def test_crossed_waiting_lists_cancel_together(app, client, make_slot, nik, monkeypatch):
    """Two slots whose lines hold the same two over-limit residents in crossed order:
    cancelling both at once used to deadlock on PostgreSQL."""
    for round_ in range(4):
        s1, s2 = (make_slot(capacity=1, starts_in=180 + 40 * i + 200 * round_) for i in range(2))
        holder_a = _book(client, s1.id, nik(), "081200000001").json["code"]
        holder_b = _book(client, s2.id, nik(), "081200000002").json["code"]
        x, y = nik(), nik()
        _join(client, s1.id, x, "081200000003")
        _join(client, s1.id, y, "081200000004")
        _join(client, s2.id, y, "081200000004")
        _join(client, s2.id, x, "081200000003")
        later = make_slot(capacity=5, starts_in=24 * 60 * 2 + round_ * 30)
        _book(client, later.id, x, "081200000003")
        _book(client, later.id, y, "081200000004")
        answers = _together(
            app,
            [
                lambda c, code=code, phone=phone: (
                    _post(c, f"/api/v1/bookings/{code}/cancel", {"phone": phone}).status_code
                )
                for code, phone in ((holder_a, "081200000001"), (holder_b, "081200000002"))
            ],
        )
        assert answers == [200, 200]
        db.session.expire_all()
        assert db.session.get(Slot, s1.id).booked_count == 0
        assert db.session.get(Slot, s2.id).booked_count == 0


@pytest.mark.slow
def test_cancel_racing_a_join_never_leaves_a_place_free_while_someone_waits(
    app, client, make_slot, nik
):
    for round_ in range(8):
        slot = make_slot(capacity=2, starts_in=180 + 40 * round_)
        first = _book(client, slot.id, nik(), "081200000011").json["code"]
        _book(client, slot.id, nik(), "081200000012")
        waiter = nik()
        _together(
            app,
            [
                lambda c, code=first: _post(
                    c, f"/api/v1/bookings/{code}/cancel", {"phone": "081200000011"}
                ),
                lambda c, slot_id=slot.id, waiter=waiter: _join(c, slot_id, waiter, "081200000013"),
            ],
        )
        db.session.expire_all()
        fresh = db.session.get(Slot, slot.id)
        waiting = db.session.scalar(
            select(func.count(WaitingListEntry.id)).where(
                WaitingListEntry.slot_id == slot.id, WaitingListEntry.status == "waiting"
            )
        )
        assert not (waiting and fresh.booked_count < fresh.capacity), round_


def test_no_second_place_in_the_same_slot_even_with_a_higher_limit(
    app, client, make_slot, nik, monkeypatch
):
    monkeypatch.setitem(app.config, "BOOKING_LIMIT_PER_NIK", 2)
    slot = make_slot(capacity=2, starts_in=180)
    person = nik()
    _book(client, slot.id, person, "081200000021")
    other = _book(client, slot.id, nik(), "081200000022").json["code"]
    refused = _join(client, slot.id, person, "081200000021")
    assert refused.status_code == 409 and refused.json["error"] == "already_booked"
    cancel = _post(client, f"/api/v1/bookings/{other}/cancel", {"phone": "081200000022"})
    assert cancel.status_code == 200


@pytest.mark.parametrize("key", ["%C3%A9", "%F0%9F%98%80", "%ED%A0%80"])
def test_non_ascii_capability_keys_are_404(client, make_slot, nik, key):
    slot = make_slot(capacity=1, starts_in=180)
    code = _book(client, slot.id, nik()).json["code"]
    entry = _join(client, slot.id, nik(), "081200000031").json["code"]
    assert client.get(f"/tickets/{code}/{key}").status_code == 404
    assert client.get(f"/tickets/{code}/{key}/qr.png").status_code == 404
    assert client.get(f"/waiting/{entry}/{key}").status_code == 404


def test_a_notice_that_cannot_be_written_stays_pending(
    app, client, make_slot, nik, tmp_path, monkeypatch
):
    monkeypatch.setitem(app.config, "NOTIFY_LOG_FILE", str(tmp_path))  # a folder
    slot = make_slot(capacity=1, starts_in=180)
    assert _book(client, slot.id, nik()).status_code == 201
    confirmation = select(Notice).where(Notice.kind == "confirmation")
    notice = db.session.scalar(confirmation)
    assert (notice.status, notice.attempts) == ("pending", 1)
    assert notice.last_error.startswith("DeliveryError: cannot write")
    log_file = tmp_path / "notices.jsonl"
    monkeypatch.setitem(app.config, "NOTIFY_LOG_FILE", str(log_file))
    # Still in its retry back-off: nothing is due yet, until the operator says so.
    assert "0 notices sent" in app.test_cli_runner().invoke(args=["notices", "deliver"]).output
    result = app.test_cli_runner().invoke(args=["notices", "deliver", "--retry-now"])
    assert "1 notices due again" in result.output and "1 notices sent" in result.output
    db.session.expire_all()
    assert db.session.scalar(confirmation).status == "sent"
    assert json.loads(log_file.read_text())["kind"] == "confirmation"


def test_idempotency_fingerprint_is_keyed(app, client, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    person = nik()
    body = {"slot_id": slot.id, "name": "Warga", "nik": person, "phone": "081234567890"}
    client.post("/api/v1/bookings", json=body, headers={"Idempotency-Key": "k-fp"})
    stored = db.session.scalar(select(IdempotencyKey.request_hash))
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert stored != hashlib.sha256(canonical).hexdigest()
    keyed = hmac.new(app.config["NIK_HASH_KEY"].encode(), canonical, hashlib.sha256)
    assert stored == keyed.hexdigest()
    assert db.session.scalar(select(func.count(Booking.id))) == 1


def test_slots_expire_command(app, ctx, make_slot, nik):
    from datetime import timedelta

    slot = make_slot(capacity=1, starts_in=-100, minutes=30)  # ended 70 minutes ago
    db.session.add(
        Booking(
            code="ACDEFGH3",
            slot_id=slot.id,
            resident_id=_resident(),
            name="Warga",
            nik_last4="0001",
            phone="+6281234567890",
            status="confirmed",
            created_at=slot.starts_at - timedelta(days=1),
        )
    )
    db.session.execute(Slot.__table__.update().values(booked_count=1))
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["slots", "expire"])
    assert "1 no-shows marked" in result.output
    db.session.expire_all()
    assert db.session.scalar(select(Booking.status)) == "no_show"
    assert db.session.get(Slot, slot.id).booked_count == 0


def _resident() -> int:
    from slots.models import Resident

    resident = Resident(nik_hash="e" * 64, nik_last4="0001")
    db.session.add(resident)
    db.session.flush()
    return resident.id

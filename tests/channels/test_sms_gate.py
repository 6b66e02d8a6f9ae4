"""A booking made by SMS is admitted at the gate by its typed code (issue 17); the
per-phone budget answers an SMS flood politely, once (issue 17 §5)."""

from __future__ import annotations

from tests.channels.conftest import bookings, replies_to


def test_a_booking_made_by_sms_is_admitted_by_its_typed_code(
    client, send_sms, make_slot, make_user, nik
):
    slot = make_slot(capacity=5, starts_in=-5, minutes=30)
    start = "09:55"  # the test clock is 10:00 WIB; the slot started five minutes ago
    answer = send_sms(f"DAFTAR {slot.market_point.code} 03-12 {start} {nik()} Rina Wati")
    [booking] = bookings()
    assert booking.code in answer.json["replies"][0]
    _, token = make_user("gate@antri.test", "staff", slot.market_point)
    typed = f"{booking.code[:4].lower()}-{booking.code[4:].lower()}"
    scan = client.post(
        "/api/v1/checkin",
        json={"code": typed, "device": "gate-1", "nonce": "n-1"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert scan.status_code == 200, scan.json
    assert scan.json["result"] == "admitted"
    assert bookings()[0].status == "checked_in"


def test_a_flood_from_one_phone_is_told_once_then_dropped(app, send_sms, monkeypatch):
    monkeypatch.setitem(app.config, "RATELIMIT_ENABLED", True)
    monkeypatch.setitem(app.config, "CHANNEL_RATE_LIMIT_PHONE", "3/minute")
    # The app under test runs without Flask-Limiter's store (RATELIMIT_ENABLED off at
    # start): the channel counts in a store of its own here, the same strategy.
    from types import SimpleNamespace

    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    from channels import inbound

    store = SimpleNamespace(limiter=FixedWindowRateLimiter(MemoryStorage()))
    monkeypatch.setattr(inbound, "limiter", store)
    answers = [send_sms("BANTUAN").json["replies"] for _ in range(6)]
    assert all(answer and "PASAR" in answer[0] for answer in answers[:3])
    assert answers[3] == [
        "Terlalu banyak pesan dari nomor Anda. Tunggu beberapa menit lalu coba lagi."
    ]
    assert answers[4] == [] and answers[5] == []
    assert len(replies_to()) == 4
    other = send_sms("BANTUAN", sender="081298765432").json["replies"]
    assert "PASAR" in other[0]


def test_admins_see_the_channel_per_booking_and_a_count_per_channel(
    client, send_sms, make_slot, make_user, nik
):
    from datetime import timedelta

    from common.timeutil import utcnow
    from slots.booking import place_booking

    slot = make_slot(capacity=5, starts_in=180)
    send_sms(f"DAFTAR {slot.market_point.code} 03-12 13:00 {nik()} Rina Wati")
    place_booking(slot.id, "Budi Santoso", nik(), "081298765432")
    from extensions import db

    db.session.commit()
    admin, token = make_user("admin@antri.test", "admin")
    client.post("/login", data={"email": "admin@antri.test", "password": "correct-horse-1"})
    page = client.get("/admin/").get_data(as_text=True)
    assert '<tr data-channel="sms"><td>SMS</td><td>1</td></tr>' in page
    assert '<tr data-channel="web"><td>Web</td><td>1</td></tr>' in page
    assert '<tr data-channel="ussd"><td>USSD</td><td>0</td></tr>' in page
    day = (utcnow() + timedelta(hours=7)).date().isoformat()
    export = client.get(
        f"/api/v1/exports/bookings.csv?date={day}", headers={"Authorization": f"Bearer {token}"}
    )
    lines = export.get_data(as_text=True).splitlines()
    assert lines[0].endswith(",channel")
    assert sorted(line.rsplit(",", 1)[1] for line in lines[1:]) == ["sms", "web"]

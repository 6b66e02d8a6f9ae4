"""SMS through a gateway (issue 17 §2): keywords, signatures, resends, refusals."""

from __future__ import annotations

import json

from flask_babel import force_locale
from sqlalchemy import func, select

from channels.models import InboundMessage
from common.errors import DomainError
from extensions import db
from slots.models import Notice
from tests.channels.conftest import E164, bookings, replies_to, sign


def _daftar(slot, nik: str, name: str = "Siti Aminah") -> str:
    start = slot.starts_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Jakarta"))
    return f"daftar {slot.market_point.code} {start:%d-%m} {start:%H:%M} {nik} {name}"


def test_a_whole_booking_look_up_and_cancellation_by_sms(send_sms, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=180)
    answer = send_sms(_daftar(slot, nik()), message_id="gw-1")
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "queued"
    [booking] = bookings()
    assert booking.channel == "sms" and booking.phone == E164 and booking.name == "Siti Aminah"
    [reply] = answer.json["replies"]
    assert booking.code in reply and slot.market_point.name in reply
    assert "13:00" in reply  # the slot's local start (10:00 WIB + 180 min)
    [notice] = replies_to()
    assert notice.body == reply and notice.ref == "sms:gw-1:0" and notice.via == ""
    confirmation = db.session.scalar(select(Notice).where(Notice.booking_id == booking.id))
    assert confirmation.kind == "confirmation" and confirmation.via == ""

    looked = send_sms(f"CEK {booking.code.lower()}")
    assert booking.code in looked.json["replies"][0]
    assert "Terkonfirmasi" in looked.json["replies"][0]

    cancelled = send_sms(f"Batal {booking.code[:4]}-{booking.code[4:]}")
    assert booking.code in cancelled.json["replies"][0]
    [booking] = bookings()
    assert booking.status == "cancelled"


def test_a_resent_id_books_once_and_answers_once(send_sms, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=180)
    text = _daftar(slot, nik())
    first = send_sms(text, message_id="gw-7")
    again = send_sms(text, message_id="gw-7")
    assert first.json["status"] == "queued"
    assert again.status_code == 200 and again.json == {
        "id": "gw-7",
        "status": "duplicate",
        "replies": [],
    }
    assert len(bookings()) == 1 and len(replies_to()) == 1


def test_a_bad_or_missing_signature_is_403_and_writes_nothing(client, channels_on, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=180)
    body = json.dumps({"id": "x1", "from": "081234567890", "text": _daftar(slot, nik())}).encode()
    for headers in (
        {},
        {"X-Antri-Signature": sign(body, "wrong-secret")},
        {"X-Antri-Signature": sign(body)[7:]},  # without "sha256="
        {"X-Antri-Signature": sign(body + b" ")},
    ):
        answer = client.post(
            "/api/v1/channels/sms",
            data=body,
            headers={"Content-Type": "application/json", **headers},
        )
        assert answer.status_code == 403 and answer.json["error"] == "invalid_signature"
    assert bookings() == [] and replies_to() == []
    assert db.session.scalar(select(func.count(InboundMessage.id))) == 0


def test_an_unset_secret_closes_the_endpoint(client, app, ctx, monkeypatch):
    monkeypatch.setitem(app.config, "SMS_INBOUND_SECRET", "")
    body = b'{"id": "1", "from": "081234567890", "text": "BANTUAN"}'
    answer = client.post(
        "/api/v1/channels/sms",
        data=body,
        headers={"Content-Type": "application/json", "X-Antri-Signature": sign(body, "")},
    )
    assert answer.status_code == 503 and answer.json["error"] == "channel_not_configured"


def test_an_invalid_nik_gets_a_plain_reply_naming_the_fault(send_sms, make_slot):
    slot = make_slot(capacity=3, starts_in=180)
    short = send_sms(_daftar(slot, "3171 0412 0590"))
    region = send_sms(_daftar(slot, "9999991205900001"))
    with force_locale("id"):
        from slots.identity import validate_nik

        try:
            validate_nik("1")
        except DomainError as exc:
            length_text = str(exc.message)
    assert short.json["replies"] == [length_text]
    assert "16" in length_text and "NIK" in length_text
    assert "enam digit pertama" in region.json["replies"][0].lower()
    assert bookings() == []


def test_anything_unexpected_gets_the_keyword_help(send_sms):
    answer = send_sms("halo, saya mau daftar beras")
    [text] = answer.json["replies"]
    assert "PASAR" in text and "DAFTAR" in text and "CEK" in text and "BATAL" in text


def test_en_switches_to_english_and_stays(send_sms, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=180)
    assert "English" in send_sms("EN").json["replies"][0]
    booked = send_sms(_daftar(slot, nik()))
    assert booked.json["replies"][0].startswith("Booked.")
    assert bookings()[0].language == "en"
    assert "Antri" in send_sms("ID").json["replies"][0]
    assert send_sms("cek ZZZZZZZZ").json["replies"][0] != ""


def test_pasar_and_jadwal_list_points_and_places_left(send_sms, make_point, make_slot):
    point = make_point(code="JKT-321", name="Pasar Baru Senen", kecamatan="Senen")
    make_slot(capacity=4, starts_in=180, point=point)
    listed = send_sms("pasar senen").json["replies"][0]
    assert "JKT-321 Pasar Baru Senen (Senen)" in listed
    day = send_sms("JADWAL jkt-321").json["replies"][0]
    assert "13:00 4" in day
    assert "TT-BB" in send_sms("JADWAL jkt-321 32-13").json["replies"][0]
    nothing = send_sms("pasar atlantis").json["replies"][0]
    assert "atlantis" in nothing


def test_a_full_slot_puts_the_sender_on_its_waiting_list(send_sms, make_slot, nik):
    slot = make_slot(capacity=1, starts_in=180)
    send_sms(_daftar(slot, nik(), "Budi Santoso"), sender="081298765432")
    answer = send_sms(_daftar(slot, nik()))
    text = answer.json["replies"][0]
    assert "1" in text and len(bookings()) == 1
    from slots.models import WaitingListEntry

    entry = db.session.scalar(select(WaitingListEntry))
    assert entry.phone == E164 and entry.code in text


def test_an_error_the_channel_does_not_know_gets_a_generic_reply(
    send_sms, make_slot, nik, monkeypatch
):
    from slots import booking as slots_booking

    def ballot_only(*args, **kwargs):
        raise DomainError("Only by ballot here.", code="ballot_only", status=409)

    monkeypatch.setattr(slots_booking, "place_booking", ballot_only)
    slot = make_slot(capacity=3, starts_in=180)
    answer = send_sms(_daftar(slot, nik()))
    assert answer.status_code == 200
    assert answer.json["replies"] == [
        "Maaf, ini tidak dapat dilakukan sekarang. Silakan coba lagi nanti."
    ]
    assert bookings() == []


def test_a_sender_that_is_not_an_indonesian_mobile_is_422(send_sms):
    answer = send_sms("BANTUAN", sender="+14155550100")
    assert answer.status_code == 422 and answer.json["error"] == "invalid_phone"
    assert db.session.scalar(select(func.count(InboundMessage.id))) == 0


def test_a_time_typed_without_a_separator_books_the_same_slot(send_sms, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=180)
    local = slot.starts_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Jakarta"))
    answer = send_sms(f"DAFTAR {slot.market_point.code} {local:%d-%m} {local:%H%M} {nik()} Ani")
    [booking] = bookings()
    assert booking.slot_id == slot.id and booking.code in answer.json["replies"][0]

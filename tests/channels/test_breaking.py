"""What a tester found trying to break the phone channels (issue 17): each test names
one way residents' messages were lost or answered with an error, and pins the fix."""

from __future__ import annotations

import json

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select

from channels.models import InboundMessage
from extensions import db
from tests.channels.conftest import WA_APP_SECRET, bookings, replies_to, sign


class _DownStore:
    """A rate-limit strategy whose storage (Redis) is down: every hit raises."""

    def hit(self, *args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6399.")


def test_an_sms_is_answered_when_the_rate_limit_store_is_down(app, send_sms, monkeypatch):
    from types import SimpleNamespace

    from channels import inbound

    monkeypatch.setitem(app.config, "RATELIMIT_ENABLED", True)
    monkeypatch.setattr(inbound, "limiter", SimpleNamespace(limiter=_DownStore()))
    answer = send_sms("BANTUAN", message_id="redis-down-1")
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "queued"
    assert answer.json["replies"][0].startswith("Antri: PASAR <kecamatan>;")
    assert len(replies_to()) == 1


def _wa_payload(text: str, message_id: str) -> bytes:
    message = {"from": "6281234567890", "id": message_id, "type": "text", "text": {"body": text}}
    return json.dumps({"entry": [{"changes": [{"value": {"messages": [message]}}]}]}).encode()


@pytest.mark.parametrize("dead_redis", ["redis://127.0.0.1:1/0"])
def test_a_whatsapp_message_is_answered_inline_when_redis_is_down(
    app, client, channels_on, monkeypatch, dead_redis
):
    # Meta got its 200: it never sends the message again, so RQ being down must not
    # leave it unanswered in its row.
    monkeypatch.setitem(app.config, "REDIS_URL", dead_redis)
    body = _wa_payload("BANTUAN", "wamid.redis-down")
    answer = client.post(
        "/api/v1/channels/whatsapp",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(body, WA_APP_SECRET),
        },
    )
    answer.close()  # the hand-over runs after the response
    assert answer.status_code == 200 and answer.json == {"received": 1}
    db.session.expire_all()
    row = db.session.scalars(select(InboundMessage)).one()
    assert row.handled_at is not None and row.body == ""
    replies = replies_to()
    assert len(replies) == 1 and replies[0].body.startswith("Antri: PASAR <kecamatan>;")


def test_a_day_held_by_a_ballot_is_answered_with_the_ballot_not_a_failure(
    app, send_sms, make_point, make_slot, nik, monkeypatch
):
    # Issue 16: a ballot holds the day. JADWAL listed its places as if bookable and
    # DAFTAR got "Sorry, this cannot be done now": the resident never learnt of the ballot.
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from ballots.rounds import create_ballot
    from common.timeutil import local_date, utcnow

    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://antri.example.id")
    point = make_point(code="JKT-901")
    slot = make_slot(capacity=10, starts_in=2 * 1440, point=point)
    now = utcnow()
    day = local_date(slot.starts_at, point.timezone)
    ballot = create_ballot(point.code, day, now - timedelta(minutes=1), now + timedelta(hours=1))
    db.session.commit()
    start = slot.starts_at.astimezone(ZoneInfo("Asia/Jakarta"))
    jadwal = send_sms(f"JADWAL JKT-901 {start:%d-%m}").json["replies"]
    daftar = send_sms(f"DAFTAR JKT-901 {start:%d-%m} {start:%H:%M} {nik()} Siti").json["replies"]
    # The times are listed as the ballot's, and choosing one enters the ballot.
    assert jadwal[0].endswith(f"{start:%H:%M} undian")
    from ballots.models import BallotEntry

    [entry] = db.session.scalars(select(BallotEntry)).all()
    assert entry.ballot_id == ballot.id and entry.code in daftar[0]
    assert daftar[0].startswith("Hari itu lewat undian. Anda ikut undian")
    assert bookings() == []


MENU_ID = "CON Antri antre pasar murah\n1 Pesan\n2 Cek tiket\n3 Batal"


def test_a_ussd_gateway_that_goes_back_gets_the_screen_of_the_choices_it_sends(
    ussd, make_point, make_slot
):
    # A resent hop was told by the number of choices only: after the gateway went back
    # to "1", its next hop "2" (as many choices as the last) got the old screen again.
    point = make_point(code="JKT-556", name="Pasar Kenari", kecamatan="Senen")
    make_slot(capacity=2, starts_in=180, point=point)
    assert ussd("back", "") == MENU_ID
    assert ussd("back", "1") == "CON Ketik nama kecamatan atau pasar:"
    assert ussd("back", "1*senen").startswith("CON Pilih pasar:\n1 Pasar Kenari")
    # Back to the menu's choice, then another one of the same length.
    assert ussd("back", "1") == "CON Ketik nama kecamatan atau pasar:"
    assert ussd("back", "2") == "CON Ketik kode pemesanan Anda:"
    assert ussd("back", "2") == "CON Ketik kode pemesanan Anda:"  # resent: the same
    assert ussd("back", "3") == "CON Ketik kode pemesanan yang dibatalkan:"
    assert bookings() == []


def test_an_empty_ussd_choice_asks_again_instead_of_naming_nothing(ussd):
    # "1**": the area typed was empty; it answered "No market found for . Type ...".
    assert ussd("empty", "1") == "CON Ketik nama kecamatan atau pasar:"
    assert ussd("empty", "1*") == "CON Ketik nama kecamatan atau pasar:"
    assert ussd("empty", "1**") == "CON Ketik nama kecamatan atau pasar:"


KK = "3171041234560001"


def test_a_point_with_a_household_limit_is_bookable_by_sms_and_ussd(
    send_sms, ussd, make_point, make_slot, nik
):
    # Such a point needs the family card (as on the web): no channel asked for it, so
    # every booking there was refused with "This market asks for your KK number".
    from zoneinfo import ZoneInfo

    point = make_point(code="JKT-557", name="Pasar Keluarga", kecamatan="Senen")
    point.household_limit = True
    slot = make_slot(capacity=5, starts_in=180, point=point)
    db.session.commit()
    start = slot.starts_at.astimezone(ZoneInfo("Asia/Jakarta"))
    daftar = f"DAFTAR JKT-557 {start:%d-%m} {start:%H:%M}"
    first, second = nik(), nik()

    no_kk = send_sms(f"{daftar} {first} Siti Aminah").json["replies"]
    assert no_kk == [
        "Pasar ini juga meminta nomor Kartu Keluarga (KK): kirim DAFTAR "
        "<kode pasar> <TT-BB> <JJ:MM> <NIK> <KK> <nama>."
    ]
    booked = send_sms(f"{daftar} {first} {KK} Siti Aminah").json["replies"]
    [booking] = bookings()
    assert booked[0].startswith(f"Terdaftar. Kode {booking.code}.")
    assert booking.kk_hash is not None
    # The same family card again, another NIK: the household limit, named plainly.
    again = send_sms(f"{daftar} {second} {KK} Budi", sender="081298765432").json["replies"]
    assert again == [
        "Keluarga Anda (Kartu Keluarga) sudah punya pemesanan pada periode ini. "
        "Di sini hanya boleh satu pemesanan per keluarga."
    ]

    # USSD: the menu asks for the KK after the NIK, names a wrong one, then books.
    walk = ["1", "keluarga", "1", "1", "1", second]
    for n in range(1, len(walk)):
        ussd("kk", "*".join(walk[:n]), phone="081211112222")
    assert ussd("kk", "*".join(walk), phone="081211112222") == (
        "CON Ketik nomor Kartu Keluarga (KK) Anda (16 angka):"
    )
    walk.append("123")
    assert ussd("kk", "*".join(walk), phone="081211112222").startswith(
        "CON Nomor Kartu Keluarga (KK) terdiri dari tepat 16 digit."
    )
    walk += ["3171041234560002", "Budi Santoso"]
    assert ussd("kk", "*".join(walk[:-1]), phone="081211112222") == (
        "CON Ketik nama Anda sesuai KTP:"
    )
    assert "****" in ussd("kk", "*".join(walk), phone="081211112222")
    end = ussd("kk", "*".join(walk + ["1"]), phone="081211112222")
    assert end.startswith("END Terdaftar. Kode ") and len(bookings()) == 2


def test_a_very_long_sms_is_answered_not_refused(send_sms):
    # 10 kB of text (a paste, a long concatenated SMS) was a 422 to the gateway: the
    # resident got no answer at all (WhatsApp cut such a text and answered).
    answer = send_sms("PASAR " + "x" * 10_000, message_id="long-1")
    assert answer.status_code == 200, answer.json
    assert answer.json["replies"] == ["Tidak ada pasar untuk " + "x" * 40 + "."]
    help_answer = send_sms("halo " * 2_000, message_id="long-2")
    assert help_answer.status_code == 200
    assert help_answer.json["replies"][0].startswith("Antri: PASAR <kecamatan>;")


def test_the_staff_page_names_a_tampered_channel_and_shows_faults_as_errors(
    client, channels_on, make_point, make_user
):
    # A channel the form does not offer answered "?"; faults showed as plain text.
    point = make_point(code="JKT-558")
    make_user("staff-sim@antri.local", "staff", point)
    assert (
        client.post(
            "/login", data={"email": "staff-sim@antri.local", "password": "correct-horse-1"}
        ).status_code
        == 302
    )
    tampered = client.post(
        "/staff/channels/simulate", data={"channel": "fax", "phone": "0812", "text": "x"}
    )
    assert tampered.status_code == 200
    assert '<div class="flash error" role="alert">Pilih SMS, USSD atau WhatsApp.</div>' in (
        tampered.text
    )
    bad_phone = client.post(
        "/staff/channels/simulate", data={"channel": "sms", "phone": "12345", "text": "BANTUAN"}
    )
    assert '<div class="flash error" role="alert">Nomor HP tidak valid.' in bad_phone.text
    ok = client.post(
        "/staff/channels/simulate",
        data={"channel": "sms", "phone": "081234567890", "text": "BANTUAN"},
    )
    assert "Antri: PASAR &lt;kecamatan&gt;;" in ok.text
    assert 'name="phone" type="tel"' in ok.text and 'name="text" type="text"' in ok.text


def test_a_wrong_answer_to_the_cancel_question_asks_it_again(send_sms, ussd, make_slot, nik):
    # It answered only "Choose a number from the list." with no list on the screen.
    from zoneinfo import ZoneInfo

    slot = make_slot(capacity=3, starts_in=180)
    start = slot.starts_at.astimezone(ZoneInfo("Asia/Jakarta"))
    code = slot.market_point.code
    send_sms(f"DAFTAR {code} {start:%d-%m} {start:%H:%M} {nik()} Siti Aminah")
    [booking] = bookings()
    question = ussd("cancel", f"3*{booking.code}")
    again = ussd("cancel", f"3*{booking.code}*9")
    assert question.startswith(f"CON Batalkan pemesanan {booking.code} di ")
    assert again == "CON Pilih nomor dari daftar. " + question[4:]
    assert again.endswith("\n1 Ya\n2 Tidak") and len(again) - 4 <= 182
    assert bookings()[0].status == "confirmed"
    assert ussd("cancel", f"3*{booking.code}*9*1").startswith(f"END Pemesanan {booking.code} ")
    assert bookings()[0].status == "cancelled"


def test_leaving_a_waiting_list_twice_says_so_not_try_again_later(send_sms, make_slot, nik):
    # BATAL of an entry already left answered "Sorry, this cannot be done now. Please
    # try again later": trying again never helps.
    from zoneinfo import ZoneInfo

    slot = make_slot(capacity=1, starts_in=180)
    start = slot.starts_at.astimezone(ZoneInfo("Asia/Jakarta"))
    daftar = f"DAFTAR {slot.market_point.code} {start:%d-%m} {start:%H:%M}"
    send_sms(f"{daftar} {nik()} Siti Aminah", sender="081298765432")
    waiting = send_sms(f"{daftar} {nik()} Budi Santoso").json["replies"][0]
    code = waiting.split("kode ")[1].split(".")[0]
    assert send_sms(f"BATAL {code}").json["replies"] == [f"Anda keluar dari daftar tunggu {code}."]
    assert send_sms(f"BATAL {code}").json["replies"] == [
        "Anda sudah tidak ada di daftar tunggu ini."
    ]

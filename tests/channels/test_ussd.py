"""USSD (issue 17 §3): the menu's whole booking path, look-up and cancel; every screen
at most 182 GSM 7-bit characters on every branch; a repeated hop does nothing twice."""

from __future__ import annotations

from channels.gsm7 import is_gsm7, to_gsm7
from tests.channels.conftest import E164, USSD_SECRET, bookings

NIK_OK = "3171041205900042"


def _screen_ok(answer: str) -> str:
    assert answer.startswith(("CON ", "END ")), answer
    screen = answer[4:]
    assert len(screen) <= 182, (len(screen), screen)
    assert is_gsm7(screen), screen
    return screen


def _walk(ussd, session: str, choices: list[str], phone: str = "081234567890") -> list[str]:
    """Every answer of a session walking ``choices`` hop by hop."""
    answers = [ussd(session, "", phone)]
    for n in range(1, len(choices) + 1):
        answers.append(ussd(session, "*".join(choices[:n]), phone))
    for answer in answers:
        _screen_ok(answer)
    return answers


def test_gsm7_check_and_accents():
    assert is_gsm7("Pilih pasar:\n1 Pasar Senen (12)")
    assert not is_gsm7("Caf\u00e9 \u2019x\u2019 [1]")  # ' and [ are not basic-table
    assert to_gsm7("Jalan Kebon Jeruk \u2013 Caf\u00ea") == "Jalan Kebon Jeruk - Cafe"
    assert to_gsm7("{x}") == "?x?"


def test_a_whole_booking_then_look_up_and_cancel_by_ussd(ussd, make_point, make_slot):
    point = make_point(code="JKT-555", name="Pasar Kenari", kecamatan="Senen")
    slot = make_slot(capacity=2, starts_in=180, point=point)
    path = ["1", "senen", "1", "1", "1", NIK_OK, "Siti Aminah", "1"]
    answers = _walk(ussd, "s-1", path)
    assert answers[0].startswith("CON ") and "1 Pesan" in answers[0]
    assert "Pasar Kenari" in answers[3] or "Kam" in answers[3]
    assert answers[-2].startswith("CON ") and "****0042" in answers[-2]
    end = answers[-1]
    [booking] = bookings()
    assert end.startswith("END ") and booking.code in end
    assert booking.channel == "ussd" and booking.phone == E164 and booking.slot_id == slot.id
    # The gateway asks again for the last hop: the same screen, no second booking.
    assert ussd("s-1", "*".join(path)) == end
    assert len(bookings()) == 1

    looked = _walk(ussd, "s-2", ["2", booking.code])
    assert booking.code in looked[-1] and looked[-1].startswith("END ")
    cancel = _walk(ussd, "s-3", ["3", booking.code, "1"])
    assert "dibatalkan" in cancel[-1]
    assert bookings()[0].status == "cancelled"


def test_every_branch_of_the_booking_path_fits_a_screen(ussd, make_point, make_slot, nik):
    long_name = "Pasar Induk Beras Cipinang Jaya Raya Kramat Jati Timur Blok " + "A" * 40
    points = [
        make_point(code=f"JKT-6{n:02d}", name=f"{long_name} {n}", kecamatan="Kramat Jati")
        for n in range(6)
    ]
    for start in range(7):  # seven slots: the time list has a second page
        make_slot(
            capacity=1 if start == 0 else 3, starts_in=120 + 30 * start, minutes=30, point=points[0]
        )
    # Wrong choices at every step, a second page of times, a bad NIK, a bad name, a no.
    branches = [
        ["9"],
        ["1", "atlantis"],
        ["1", "kramat", "7"],
        ["1", "kramat", "1", "9"],
        ["1", "kramat", "1", "1", "x"],
        ["1", "kramat", "1", "1", "0"],
        ["1", "kramat", "1", "1", "0", "1", "123"],
        ["1", "kramat", "1", "1", "0", "1", "9999991205900001"],
        ["1", "kramat", "1", "1", "1", NIK_OK, "x"],
        ["1", "kramat", "1", "1", "1", NIK_OK, "Budi " + "Santoso" * 20, "3"],
        ["1", "kramat", "1", "1", "1", NIK_OK, "Budi Santoso", "2"],
        ["1", "kramat", "2"],  # a point without slots
        ["2", "ZZZZ-ZZZZ"],
        ["3", "ZZZZ-ZZZZ"],
    ]
    for number, choices in enumerate(branches):
        _walk(ussd, f"b-{number}", choices)
    # The full first slot: one booking, then the next resident joins its waiting list.
    first = _walk(ussd, "full-1", ["1", "kramat", "1", "1", "1", nik(), "Rina Wati", "1"])
    other = "081298765432"
    waiting = _walk(ussd, "full-2", ["1", "kramat", "1", "1", "1", nik(), "Dewi Sri", "1"], other)
    assert first[-1].startswith("END ") and waiting[-1].startswith("END ")
    assert "daftar tunggu" in waiting[-1]
    assert len(bookings()) == 1


def test_a_new_session_carrying_choices_walks_them(ussd, make_slot):
    make_slot(capacity=2, starts_in=180)
    answer = ussd("dialled-1", "1*senen")
    assert answer.startswith("CON ") and "Pilih pasar" in answer


def test_a_wrong_or_missing_key_is_403(client, channels_on):
    form = {"sessionId": "s", "serviceCode": "*1#", "phoneNumber": "081234567890", "text": ""}
    for query in ("", "?key=nope", f"?key={USSD_SECRET}x"):
        answer = client.post(f"/api/v1/channels/ussd{query}", data=form)
        assert answer.status_code == 403 and answer.json["error"] == "invalid_signature"


def test_a_number_antri_cannot_book_for_ends_politely(ussd):
    answer = ussd("f-1", "", phone="+14155550100")
    assert answer.startswith("END ") and "HP Indonesia" in answer


def test_a_time_is_the_slot_the_list_showed_at_that_number(ussd, make_point, make_slot, nik):
    """The time list is kept with the conversation: a number means the slot shown at it
    (on the second page too), even when the day's slots changed since; the booking
    itself then says whether that slot still takes one."""
    from common.timeutil import utcnow
    from extensions import db

    point = make_point(code="JKT-777", name="Pasar Baru", kecamatan="Sawah Besar")
    slots = [
        make_slot(capacity=3, starts_in=120 + 30 * n, minutes=30, point=point) for n in range(7)
    ]
    _walk(ussd, "p-1", ["1", "sawah", "1", "1", "0", "2", nik(), "Rina Wati", "1"])
    [booking] = bookings()
    assert booking.slot_id == slots[6].id  # page 2, number 2: the seventh slot

    # The market closes the first slot after the list was shown: number 1 is still it,
    # and its booking is refused in plain words, nothing written.
    shown = _walk(ussd, "p-2", ["1", "sawah", "1", "1"], "081298765432")
    assert "1 " in shown[-1]
    slots[0].closed_at = utcnow()
    db.session.commit()
    walk = ["1", "sawah", "1", "1", "1", nik(), "Dewi Sri", "1"]
    answers = [ussd("p-2", "*".join(walk[:n]), "081298765432") for n in range(5, 9)]
    assert answers[-1].startswith("END ") and "menutup jadwal ini" in answers[-1]
    assert len(bookings()) == 1

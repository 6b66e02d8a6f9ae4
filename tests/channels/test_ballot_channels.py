"""A day released by a ballot (issue 16) on the phone channels (issue 17): choosing one
of its slots by SMS or USSD enters the ballot under the web's rules, CEK with the entry
code tells the outcome, BATAL with it changes nothing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from ballots.models import BallotEntry
from common.timeutil import local_date, utcnow
from extensions import db
from tests.channels.conftest import E164, bookings, replies_to
from tests.channels.test_ussd import _walk

NIK_OK = "3171041205900042"


def _ballot_day(make_point, make_slot, opens_in_minutes: int = -1):
    """Two slots of 5 places at JKT-556 two days ahead, held by a ballot open from
    ``opens_in_minutes`` (negative: already open) for an hour."""
    from ballots.rounds import create_ballot

    point = make_point(code="JKT-556", name="Pasar Undian", kecamatan="Senen")
    slots = [make_slot(capacity=5, starts_in=2 * 1440 + 30 * i, point=point) for i in range(2)]
    now = utcnow()
    ballot = create_ballot(
        point.code,
        local_date(slots[0].starts_at, point.timezone),
        now + timedelta(minutes=opens_in_minutes),
        now + timedelta(hours=1),
    )
    db.session.commit()
    return point, slots, ballot


def _entries() -> list[BallotEntry]:
    db.session.expire_all()
    return list(db.session.scalars(select(BallotEntry).order_by(BallotEntry.id)))


def _day_and_time(slot, point) -> tuple[str, str]:
    from common.timeutil import zone

    local = slot.starts_at.astimezone(zone(point.timezone))
    return f"{local:%d-%m}", f"{local:%H:%M}"


def test_daftar_on_a_balloted_day_enters_the_ballot_and_cek_tells_the_outcome(
    send_sms, make_point, make_slot
):
    point, slots, ballot = _ballot_day(make_point, make_slot)
    day, clock = _day_and_time(slots[1], point)
    listed = send_sms(f"JADWAL JKT-556 {day}")
    assert listed.status_code == 200
    assert "undian" in replies_to()[-1].body

    assert send_sms(f"DAFTAR JKT-556 {day} {clock} {NIK_OK} Siti Aminah").status_code == 200
    [entry] = _entries()
    assert bookings() == []
    assert (entry.ballot_id, entry.phone, entry.preferences) == (ballot.id, E164, str(slots[1].id))
    reply = replies_to()[-1].body
    assert "undian" in reply and entry.code in reply
    # The entry's own message (issue 16) goes out as from the web.
    db.session.expire_all()
    from slots.models import Notice

    kinds = [n.kind for n in db.session.scalars(select(Notice).where(Notice.to_phone == E164))]
    assert "ballot_entry" in kinds

    # The same NIK again: the ballot's own refusal, in plain words.
    send_sms(f"DAFTAR JKT-556 {day} {clock} {NIK_OK} Siti Aminah")
    assert replies_to()[-1].body == "NIK (atau KK) ini sudah terdaftar di undian ini."
    assert len(_entries()) == 1

    send_sms(f"CEK {entry.code}")
    assert entry.code in replies_to()[-1].body and "diundi" in replies_to()[-1].body
    send_sms(f"BATAL {entry.code}")
    assert "tidak bisa dibatalkan" in replies_to()[-1].body
    assert _entries()[0].status == "entered"
    # Another phone learns nothing of the entry.
    send_sms(f"CEK {entry.code}", sender="081299990000")
    assert entry.code not in replies_to("+6281299990000")[-1].body

    # After the draw CEK tells the win and the booking's code.
    from ballots.draw import draw_ballot

    draw_ballot(ballot.id, now=ballot.closes_at + timedelta(minutes=1))
    db.session.commit()
    [booking] = bookings()
    send_sms(f"CEK {entry.code}")
    assert booking.code in replies_to()[-1].body


def test_a_ballot_not_yet_open_is_refused_plainly(send_sms, make_point, make_slot):
    point, slots, _ = _ballot_day(make_point, make_slot, opens_in_minutes=30)
    day, clock = _day_and_time(slots[0], point)
    send_sms(f"DAFTAR JKT-556 {day} {clock} {NIK_OK} Siti Aminah")
    reply = replies_to()[-1].body
    assert reply == "Pendaftaran undian ini sedang tidak dibuka."
    assert _entries() == [] and bookings() == []


def test_ussd_offers_the_balloted_day_and_its_confirmation_enters(ussd, make_point, make_slot):
    point, slots, ballot = _ballot_day(make_point, make_slot)
    answers = _walk(ussd, "b-1", ["1", "undian", "1", "1", "2", NIK_OK, "Siti Aminah", "1"])
    assert "undian" in answers[4]  # the times screen marks the ballot's slots
    [entry] = _entries()
    assert entry.preferences == str(slots[1].id) and entry.phone == E164
    assert answers[-1].startswith("END ") and entry.code in answers[-1]
    assert bookings() == []

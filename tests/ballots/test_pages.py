"""The ballot's pages (issue 16): the point page shows the day as Undian with a link,
the ballot page takes an entry without JavaScript and shows one's result; the admin
point page opens a ballot (audited)."""

from __future__ import annotations

import re

from sqlalchemy import select

from ballots.draw import draw_ballot
from ballots.models import Ballot, BallotEntry
from common.audit import AuditEntry
from extensions import db
from tests.ballots.conftest import PHONE

PASSWORD = "correct-horse-1"  # tests/conftest.py make_user's


def test_point_page_shows_undian(client, open_ballot, ballot_day):
    point, slots = ballot_day
    page = client.get(f"/points/{point.code}?date=2026-12-05").text
    assert page.count(f'data-ballot="{open_ballot.id}"') == 4
    assert "Undian" in page and f"/ballots/{open_ballot.id}" in page
    assert f"/slots/{slots[0].id}/book" not in page


def test_enter_by_form_and_see_result(client, open_ballot, ballot_day, make_nik):
    _, slots = ballot_day
    page = client.get(f"/ballots/{open_ballot.id}")
    assert page.status_code == 200 and "Daftar undian" in page.text
    form = {
        "name": "Siti Aminah",
        "nik": make_nik("521050"),  # a woman born 12-10-1950
        "phone": PHONE,
        "first": str(slots[1].id),
        "second": "",
        "third": str(slots[2].id),
    }
    posted = client.post(f"/ballots/{open_ballot.id}/enter", data=form)
    entry = db.session.scalar(select(BallotEntry))
    # Post/redirect/get: the code is shown on the page the redirect leads to.
    assert posted.status_code == 303
    assert posted.headers["Location"].endswith(f"/ballots/{open_ballot.id}?entered={entry.code}")
    entered = client.get(posted.headers["Location"])
    assert entered.status_code == 200 and 'id="entry-code"' in entered.text
    assert entry.code in entered.text and entry.slot_ids == [slots[1].id, slots[2].id]
    assert entry.elderly
    again = client.post(f"/ballots/{open_ballot.id}/enter", data=form)
    assert again.status_code == 409 and 'data-error="already_entered"' in again.text
    draw_ballot(open_ballot.id, open_ballot.closes_at)
    db.session.commit()
    result = client.post(
        f"/ballots/{open_ballot.id}/result", data={"code": entry.code, "phone": PHONE}
    )
    assert result.status_code == 200 and 'data-status="won"' in result.text
    assert open_ballot.seed in result.text  # the seed is public once drawn
    # The winner gets the ticket's own link, which opens the ticket.
    from slots.models import Booking

    booking = db.session.get(Booking, db.session.get(BallotEntry, entry.id).booking_id)
    ticket = re.search(r'id="won-ticket" href="|href="([^"]+)" id="won-ticket"', result.text)
    assert ticket and f"/tickets/{booking.code}/" in ticket.group(1)
    assert client.get(ticket.group(1)).status_code == 200
    wrong = client.post(
        f"/ballots/{open_ballot.id}/result", data={"code": entry.code, "phone": "081200000000"}
    )
    assert wrong.status_code == 404


def test_admin_opens_a_ballot(client, ballot_day, make_user):
    point, _ = ballot_day
    make_user("admin@antri.test", "admin")
    client.post("/login", data={"email": "admin@antri.test", "password": PASSWORD})
    assert 'id="ballot-form"' in client.get(f"/admin/points/{point.code}").text
    form = {"day": "2026-12-05", "opens": "2026-12-03T10:00", "closes": "2026-12-04T20:00"}
    answer = client.post(f"/admin/points/{point.code}/ballot", data=form)
    assert answer.status_code == 302, answer.text
    ballot = db.session.scalar(select(Ballot))
    assert ballot.closes_at.isoformat() == "2026-12-04T13:00:00+00:00"  # 20:00 WIB
    audit = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "ballot.create"))
    assert audit.actor == "admin@antri.test"
    page = client.get(f"/admin/points/{point.code}").text
    assert f"/ballots/{ballot.id}" in page
    twice = client.post(f"/admin/points/{point.code}/ballot", data=form)
    assert twice.status_code == 409

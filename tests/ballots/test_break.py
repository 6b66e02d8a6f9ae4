"""What a tester found trying to break ballots (issue 16), on both databases: each test
pins one finding's fix."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from ballots.draw import draw_ballot
from ballots.entering import enter_ballot
from ballots.models import NOT_DRAWN, WAITING, WON, Ballot, BallotEntry
from ballots.proof import proof_json, published_list, verify
from common.audit import CLI
from extensions import db
from slots.models import Booking, Notice, WaitingListEntry
from tests.ballots.conftest import PHONE


def _close(ballot):
    return ballot.closes_at + timedelta(seconds=1)


def test_a_slot_the_market_closes_during_the_ballot_is_left_out_of_the_draw(
    client, open_ballot, ballot_day, make_nik
):
    """A held slot closed by the market (issue 8) while the ballot runs gives no place
    and no waiting line at the draw; the draw does not crash on it (it used to count
    its places, then fail to take one: RuntimeError at every run, forever)."""
    from slots.staff import close_slot

    _, slots = ballot_day
    first, second = slots[0], slots[1]
    codes = [
        enter_ballot(open_ballot.id, f"Warga {i}", make_nik(), PHONE, [first.id, second.id]).code
        for i in range(12)
    ]
    only_first = enter_ballot(open_ballot.id, "Warga", make_nik(), PHONE, [first.id]).code
    db.session.commit()
    close_slot(first.id, CLI)
    db.session.commit()
    # Entering names a closed slot no more.
    answer = client.post(
        f"/api/v1/ballots/{open_ballot.id}/entries",
        json={"name": "Siti", "nik": make_nik(), "phone": PHONE, "preferences": [first.id]},
    )
    assert (answer.status_code, answer.json["error"]) == (422, "invalid_preferences")
    proof = draw_ballot(open_ballot.id, _close(open_ballot))
    db.session.commit()
    assert proof["places"][str(first.id)] == 0
    assert {w["slot_id"] for w in proof["winners"]} == {second.id}
    assert len(proof["winners"]) == 10 and len(proof["waiting"]) == 3
    assert db.session.scalar(select(func.count(Booking.id)).where(Booking.slot_id == first.id)) == 0
    lines = db.session.scalars(select(WaitingListEntry.slot_id)).all()
    assert lines == [second.id, second.id]
    statuses = {e.code: e.status for e in db.session.scalars(select(BallotEntry))}
    assert statuses.pop(only_first) == NOT_DRAWN  # no line left to wait in
    assert sorted(statuses.values()) == sorted([WON] * 10 + [WAITING] * 2)
    assert set(statuses) == set(codes)
    told = db.session.scalar(select(Notice.body).where(Notice.ref == f"ballot-result:{only_first}"))
    assert "pasar menutup sesi yang Anda pilih" in told
    assert verify(proof_json(open_ballot), published_list(open_ballot)) == []


def test_a_failing_draw_holds_back_no_other_ballot(app, ctx, make_point, make_slot, monkeypatch):
    """The timed job draws every due ballot even when one draw fails (logged, tried
    again at the next run); it used to stop at the first failure, and without Redis
    the inline sweep's relay after it never ran: no message went out at all."""
    import ballots.draw
    from ballots.rounds import create_ballot
    from common.timeutil import local_date, utcnow
    from jobs import run_timed_work

    now = utcnow()
    ids = []
    for code in ("JKT-901", "JKT-902"):
        point = make_point(code=code)
        slot = make_slot(capacity=2, starts_in=2 * 1440, point=point)
        day = local_date(slot.starts_at, point.timezone)
        ballot = create_ballot(code, day, now - timedelta(minutes=1), now + timedelta(hours=1))
        db.session.flush()
        ids.append(ballot.id)
    db.session.commit()
    real = ballots.draw.draw_ballot

    def flaky(ballot_id, *args, **kwargs):
        if ballot_id == ids[0]:
            raise RuntimeError("lock timeout")
        return real(ballot_id, *args, **kwargs)

    monkeypatch.setattr(ballots.draw, "draw_ballot", flaky)
    later = (now + timedelta(hours=1, seconds=1)).isoformat()
    assert run_timed_work(later)["ballots_drawn"] == 1
    db.session.expire_all()
    drawn = {b.id: b.drawn_at is not None for b in db.session.scalars(select(Ballot))}
    assert drawn == {ids[0]: False, ids[1]: True}
    monkeypatch.undo()
    assert run_timed_work(later)["ballots_drawn"] == 1
    db.session.expire_all()
    assert all(b.drawn_at is not None for b in db.session.scalars(select(Ballot)))

"""Issue 14 item 4: an offline admission the server would refuse is still a person
inside. The gate conflict is kept, and the person counts in ``inside_now`` (the safe
limit, the overview, the live feed's rows, the gate snapshot, the charts) until a
check-out scan of that ticket or the dwell time, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from checkin.models import GateConflict
from common.timeutil import utcnow
from extensions import db
from tests.checkin import test_gate
from tests.checkin.test_gate import _cancel, _offline

gate = test_gate.gate  # the gate fixture: a running slot, a staff token, book and scan


def _inside(client, gate) -> int:
    """People inside the gate's point, as the supervisor's overview row says."""
    row = client.get(
        f"/api/v1/occupancy/overview?market_point={gate.point_code}", headers=gate.headers
    ).json[0]
    return row["inside_now"]


def _sync(client, gate, *scans):
    body = {"device": "gate-offline", "scans": list(scans)}
    synced = client.post("/api/v1/checkin/sync", json=body, headers=gate.headers)
    assert synced.status_code == 200, synced.json
    return synced.json


def test_a_cancelled_ticket_admitted_offline_counts_until_checked_out(gate, client):
    gate.point.safe_limit = 1
    db.session.commit()
    cancelled, waiting = gate.book(), gate.book()
    _cancel(cancelled["code"])  # after the device's last sync
    synced = _sync(client, gate, _offline("c-1", cancelled["ticket"], 3))
    answer = synced["results"][0]
    assert (answer["result"], answer["conflict"]) == ("refused", "cancelled")
    assert synced["inside_now"] == 1
    assert _inside(client, gate) == 1
    snapshot = client.get("/api/v1/gate/sync", headers=gate.headers).json
    assert snapshot["inside_now"] == 1
    # The safe limit sees them: the next valid ticket waits.
    held = gate.scan(code=waiting["code"]).json
    assert (held["result"], held["reason"], held["inside_now"]) == ("wait", "point_full", 1)

    # They leave through the gate: a check-out scan of the cancelled ticket.
    out = gate.scan("/api/v1/checkout", code=cancelled["code"]).json
    assert (out["result"], out["reason"], out["inside_now"]) == ("checked_out", None, 0)
    conflict = db.session.scalar(select(GateConflict))
    assert conflict.kind == "cancelled" and conflict.left_at is not None
    assert conflict.resolved_at is None  # the conflict stays for the supervisor
    assert _inside(client, gate) == 0
    again = gate.scan("/api/v1/checkout", code=cancelled["code"]).json
    assert (again["result"], again["reason"]) == ("refused", "not_checked_in")
    admitted = gate.scan(code=waiting["code"]).json
    assert (admitted["result"], admitted["inside_now"]) == ("admitted", 1)
    row = client.get(
        f"/api/v1/occupancy/overview?market_point={gate.point_code}", headers=gate.headers
    ).json[0]
    assert row["gate_conflicts"] == 1 and "gate_conflicts" in row["alerts"]


def test_a_ticket_admitted_first_elsewhere_is_two_people(gate, client):
    twice = gate.book()
    assert gate.scan(code=twice["code"], device="gate-online").json["result"] == "admitted"
    synced = _sync(client, gate, _offline("t-1", twice["ticket"], 1))
    assert synced["results"][0]["conflict"] == "already_checked_in"
    assert synced["inside_now"] == 2 and _inside(client, gate) == 2
    # The booking's own visit ends first, then the one the offline gate let in.
    first = gate.scan("/api/v1/checkout", code=twice["code"]).json
    assert (first["result"], first["inside_now"]) == ("checked_out", 1)
    second = gate.scan("/api/v1/checkout", code=twice["code"]).json
    assert (second["result"], second["inside_now"]) == ("checked_out", 0)
    third = gate.scan("/api/v1/checkout", code=twice["code"]).json
    assert (third["result"], third["reason"]) == ("refused", "already_checked_out")


def test_a_conflict_visit_ends_after_the_dwell_time_and_is_charted(app, gate, client):
    from checkin.occupancy import inside_now, point_day
    from common.timeutil import local_date

    cancelled = gate.book()
    _cancel(cancelled["code"])
    _sync(client, gate, _offline("d-1", cancelled["ticket"], 0))
    scanned_at = db.session.scalar(select(GateConflict)).scan.scanned_at
    dwell = timedelta(minutes=app.config["DWELL_MINUTES"])
    point_id = gate.point.id
    assert inside_now([point_id], scanned_at + dwell - timedelta(minutes=1))[point_id] == 1
    assert inside_now([point_id], scanned_at + dwell + timedelta(minutes=1))[point_id] == 0

    now = utcnow()
    day = point_day(gate.point, local_date(now, gate.point.timezone), now)
    assert day.inside_now == 1 and sum(day.arrivals) == 1
    assert max(count for _, count in day.inside) == 1

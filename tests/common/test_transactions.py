"""How a transaction ends (``common.transactions``): one commit per request, command or
job, made by the wrapper, with the after-commit work run only once it succeeded; after a
failure, COMMIT when it wrote nothing, so PostgreSQL keeps the connection's prepared
statements, and ROLLBACK when it wrote, so a refusal leaves nothing half-written.
SQLite always rolls back a refusal (it has no prepared statements to keep)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from common import transactions
from common.audit import AuditEntry
from extensions import db
from slots.models import MarketPoint, Notice, Resident, Slot


@contextmanager
def endings():
    """Collect how transactions end on the app's engine: "commit" or "rollback"."""
    ends: list[str] = []

    def on_commit(conn):
        ends.append("commit")

    def on_rollback(conn):
        ends.append("rollback")

    event.listen(db.engine, "commit", on_commit)
    event.listen(db.engine, "rollback", on_rollback)
    try:
        yield ends
    finally:
        event.remove(db.engine, "commit", on_commit)
        event.remove(db.engine, "rollback", on_rollback)


def book(client, slot_id, nik):
    body = {"slot_id": slot_id, "name": "Siti Aminah", "nik": nik, "phone": "081234567890"}
    return client.post("/api/v1/bookings", json=body)


def test_a_refusal_that_wrote_nothing_commits_and_one_that_wrote_rolls_back(
    client, make_slot, nik, backend
):
    full = make_slot(capacity=1, starts_in=120)
    roomy = make_slot(capacity=2, starts_in=240)
    person = nik()
    assert book(client, full.id, person).status_code == 201
    with endings() as ends:
        refused = book(client, full.id, nik())
    assert (refused.status_code, refused.json["error"]) == (409, "slot_full")
    assert ends == (["commit"] if backend == "postgresql" else ["rollback"])
    # This one takes a place in the roomy slot, then meets the NIK's limit.
    residents = db.session.scalar(select(db.func.count(Resident.id)))
    with endings() as ends:
        refused = book(client, roomy.id, person)
    assert (refused.status_code, refused.json["error"]) == (409, "limit_reached")
    assert ends == ["rollback"]
    db.session.expire_all()
    assert db.session.get(Slot, roomy.id).booked_count == 0
    assert db.session.scalar(select(db.func.count(Resident.id))) == residents
    assert db.session.scalar(select(db.func.count(Notice.id))) == 1  # the first booking's


def test_a_page_that_only_read_commits(client, make_slot):
    # The one commit of a request that answered under 400 (on SQLite too, where a
    # read-only page used to roll back: either ends a transaction that wrote nothing).
    slot = make_slot(capacity=2, starts_in=120)
    with endings() as ends:
        listed = client.get(f"/api/v1/market-points/{slot.market_point.code}/slots")
        health = client.get("/healthz")
    assert listed.status_code == 200 and health.status_code == 200
    assert ends == ["commit", "commit"]


# The one commit (issue 13 item 4) ----------------------------------------------------

PASSWORD = "correct-horse-1"


def _active_in_database(code: str) -> bool:
    """The point's ``active`` as another connection sees it: only what is committed."""
    with db.engine.connect() as conn:
        return conn.execute(select(MarketPoint.active).where(MarketPoint.code == code)).scalar()


@pytest.fixture
def admin_client(client, make_user):
    make_user("admin@antri.test", "admin")
    answer = client.post("/login", data={"email": "admin@antri.test", "password": PASSWORD})
    assert answer.status_code == 302
    return client


@pytest.fixture
def probe(app, monkeypatch):
    """An after-commit hook for this test only: ``probe.calls`` counts the commits it
    was asked at, ``probe.seen`` what the work saw of point JKT-900 once it ran."""

    class Probe:
        calls = 0
        seen: list[bool] = []

    def hook(session):
        Probe.calls += 1
        return lambda: Probe.seen.append(_active_in_database("JKT-900"))

    hooks = app.extensions.get(transactions.AFTER_COMMIT, [])
    monkeypatch.setitem(app.extensions, transactions.AFTER_COMMIT, [*hooks, hook])
    Probe.seen = []
    return Probe


def test_a_view_commits_once_and_the_after_commit_work_sees_the_change(
    admin_client, make_point, probe
):
    make_point("JKT-900")
    with endings() as ends:
        answer = admin_client.post(
            "/admin/points/JKT-900/active", data={"active": "0"}, buffered=True
        )
    assert answer.status_code == 302
    assert ends.count("commit") == 1  # (the probe's own connection ends with a rollback)
    # The work ran after the commit: it saw the point inactive from another connection.
    assert (probe.calls, probe.seen) == (1, [False])


def test_a_view_raising_after_a_write_leaves_nothing_written(
    admin_client, make_point, probe, monkeypatch
):
    from admin import points
    from slots import points as slots_points

    make_point("JKT-900")

    original = slots_points.set_point_active

    def write_then_fail(code, active, actor):
        original(code, active, actor)  # writes the point and its audit row
        db.session.flush()
        raise RuntimeError("after the write")

    monkeypatch.setattr(points.slots_points, "set_point_active", write_then_fail)
    audited = db.session.scalar(select(db.func.count(AuditEntry.id)))
    with pytest.raises(RuntimeError, match="after the write"):
        admin_client.post("/admin/points/JKT-900/active", data={"active": "0"}, buffered=True)
    assert _active_in_database("JKT-900") is True
    db.session.expire_all()
    assert db.session.scalar(select(db.func.count(AuditEntry.id))) == audited
    assert (probe.calls, probe.seen) == (0, [])  # no commit, so no after-commit work


def test_a_refused_action_answered_with_a_page_commits_nothing_it_wrote(
    admin_client, make_point, probe, monkeypatch
):
    from admin import points
    from common.errors import ValidationError
    from slots import points as slots_points

    make_point("JKT-900")

    original = slots_points.set_point_active

    def write_then_refuse(code, active, actor):
        original(code, active, actor)
        db.session.flush()
        raise ValidationError("refused after the write", code="refused")

    monkeypatch.setattr(points.slots_points, "set_point_active", write_then_refuse)
    answer = admin_client.post("/admin/points/JKT-900/active", data={"active": "0"}, buffered=True)
    assert answer.status_code == 302  # the page flashes the refusal
    assert _active_in_database("JKT-900") is True
    assert probe.seen == [True]  # the request's commit held nothing of the refused action


def test_a_command_commits_once_at_its_end_and_a_failing_one_changes_nothing(
    ctx, make_point, probe
):
    make_point("JKT-900")
    runner = ctx.test_cli_runner()
    failed = runner.invoke(
        args=["points", "update", "JKT-900", "--safe-limit", "7", "--opens", "x"]
    )
    assert failed.exit_code != 0 and "HH:MM" in failed.output
    assert (probe.calls, probe.seen) == (0, [])
    done = runner.invoke(args=["points", "deactivate", "JKT-900"])
    assert done.exit_code == 0, done.output
    assert (probe.calls, probe.seen) == (1, [False])  # run at once, after the commit


def test_after_commit_work_does_not_run_when_the_commit_fails(ctx, make_point, probe, monkeypatch):
    point = make_point("JKT-900")
    session_class = type(db.session())

    def refuse(self):
        raise OperationalError("COMMIT", {}, Exception("the server went away"))

    @transactions.one_transaction
    def job():
        point.active = False
        db.session.flush()

    monkeypatch.setattr(session_class, "commit", refuse)
    with pytest.raises(OperationalError):
        job()
    monkeypatch.undo()
    assert probe.seen == []
    assert _active_in_database("JKT-900") is True


def test_notices_written_then_rolled_back_are_not_handed_on(ctx):
    db.session.execute(select(1))  # a transaction to roll back
    db.session.info[transactions.NEW_NOTICES] = ["a notice of rolled-back work"]
    db.session.rollback()
    assert transactions.NEW_NOTICES not in db.session.info

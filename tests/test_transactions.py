"""How a request's transaction ends (``common.transactions``): with COMMIT when it
wrote nothing, so PostgreSQL keeps the connection's prepared statements, and with
ROLLBACK when it wrote, so a refusal leaves nothing half-written. SQLite always
rolls back (it has no prepared statements to keep)."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event, select

from extensions import db
from slots.models import Notice, Resident, Slot


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

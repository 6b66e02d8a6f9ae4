"""Row locks (``common.locking``): only inside a transaction, and a lock held too long
by another transaction answers 503 "busy" with Retry-After, never a 500."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from common.locking import LOCK_ORDER, rank
from extensions import db
from slots.locks import lock_market_point


def test_the_lock_order_names_every_locked_table():
    assert LOCK_ORDER == (
        "conversation",
        "ballot",
        "market_point",
        "booking",
        "slot",
        "stock",
        "resident",
        "household",
    )
    assert rank("conversation") < rank("ballot") < rank("market_point")
    assert rank("market_point") < rank("booking") < rank("slot") < rank("stock")
    assert rank("stock") < rank("resident") < rank("household")
    with pytest.raises(ValueError):
        rank("audit_log")


def test_a_lock_outside_a_transaction_is_refused(ctx, make_point):
    point = make_point()
    db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    with pytest.raises(RuntimeError, match="transaction"):
        lock_market_point(point)
    db.session.rollback()


def test_a_lock_inside_the_session_transaction_is_taken(ctx, make_point):
    point = make_point()
    lock_market_point(point)  # the session begins its transaction for it
    assert db.session().in_transaction()
    db.session.rollback()


@pytest.mark.parametrize("path", ["/api/v1/bookings", "cancel"])
def test_a_lock_held_too_long_is_busy_not_an_error(
    app, client, backend, make_slot, nik, monkeypatch, path
):
    if backend != "postgresql":
        pytest.skip("lock_timeout is PostgreSQL's; SQLite waits its busy timeout")
    monkeypatch.setitem(app.config, "LOCK_TIMEOUT_MS", 200)
    monkeypatch.setitem(app.config, "RATELIMIT_ENABLED", False)
    slot = make_slot(capacity=5, starts_in=240)
    body = {"slot_id": slot.id, "name": "Budi Santoso", "nik": nik(), "phone": "081234567890"}
    booked = client.post("/api/v1/bookings", json=body)
    assert booked.status_code == 201
    slot_id = slot.id
    db.session.remove()
    with db.engine.connect() as holder:
        # Another transaction holds the slot's row lock and does not let go in time.
        holder.execute(
            text("UPDATE slot SET booked_count = booked_count WHERE id = :id"), {"id": slot_id}
        )
        if path == "cancel":
            answer = client.post(
                f"/api/v1/bookings/{booked.json['code']}/cancel",
                json={"phone": "081234567890"},
            )
        else:
            answer = client.post(path, json={**body, "nik": nik()})
        holder.rollback()
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert answer.json["error"] == "busy"
    assert answer.headers["Retry-After"] == "5"


def test_every_postgresql_connection_starts_with_the_lock_timeout(app, ctx, backend, monkeypatch):
    # A startup option, not a SET per transaction: it bounds ORM flushes too, and a
    # change of LOCK_TIMEOUT_MS reaches pooled connections (they are made again).
    if backend != "postgresql":
        pytest.skip("lock_timeout is PostgreSQL's")
    assert db.session.execute(text("SHOW lock_timeout")).scalar() == "5s"
    db.session.remove()
    monkeypatch.setitem(app.config, "LOCK_TIMEOUT_MS", 250)
    assert db.session.execute(text("SHOW lock_timeout")).scalar() == "250ms"
    db.session.remove()

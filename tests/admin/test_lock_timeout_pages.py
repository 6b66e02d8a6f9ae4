"""Tester's findings (issue 13, break-it pass): LOCK_TIMEOUT_MS bounds only the locks
taken through ``common.locking``. A write that meets a locked row through a plain ORM
flush (an admin page editing a market point) waits for the other transaction for as
long as it holds the row: the request is never answered 503 ``busy``.

README, configuration: "LOCK_TIMEOUT_MS ... how long a request waits for a row another
holds locked before it is answered 503 busy with Retry-After".
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from extensions import db

PASSWORD = "correct-horse-1"


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/admin/points/JKT-900/active", {"active": "0"}),
        (
            "/admin/points/JKT-900",
            {
                "market_id": "900",
                "name": "Pasar Uji Baru",
                "address": "Jl. Uji No. 2",
                "kecamatan": "Senen",
                "kecamatan_code": "317104",
                "city": "Jakarta Pusat",
                "safe_limit": "30",
                "opens_at": "07:00",
                "closes_at": "12:00",
                "timezone": "Asia/Jakarta",
            },
        ),
    ],
    ids=["deactivate", "edit"],
)
def test_an_admin_page_waiting_for_a_locked_point_is_answered_busy_in_time(
    app, client, backend, make_point, make_user, monkeypatch, path, form
):
    if backend != "postgresql":
        pytest.skip("lock_timeout is PostgreSQL's; SQLite waits its busy timeout")
    monkeypatch.setitem(app.config, "LOCK_TIMEOUT_MS", 300)
    point = make_point("JKT-900")
    make_user("admin@antri.test", "admin")
    login = client.post("/login", data={"email": "admin@antri.test", "password": PASSWORD})
    assert login.status_code == 302
    point_id = point.id
    db.session.remove()
    answer: dict = {}

    def submit() -> None:
        with app.app_context():
            response = client.post(path, data=form)
            answer["status"] = response.status_code
            answer["retry_after"] = response.headers.get("Retry-After")
            answer["after"] = time.monotonic() - started
            db.session.remove()

    with db.engine.connect() as holder:
        # Another transaction (a gate admitting, a slot generation) holds the point's
        # row lock, and does not let go for a good while.
        holder.execute(
            text("UPDATE market_point SET safe_limit = safe_limit WHERE id = :id"),
            {"id": point_id},
        )
        started = time.monotonic()
        worker = threading.Thread(target=submit, daemon=True)
        worker.start()
        worker.join(5)  # more than 15 times LOCK_TIMEOUT_MS
        still_waiting = worker.is_alive()
        holder.rollback()
    worker.join(30)
    assert not still_waiting, (
        f"POST {path} still waited for the locked row 5 s in, with LOCK_TIMEOUT_MS=300; "
        f"it answered {answer.get('status')} only after the other transaction ended"
    )
    assert answer["status"] == 503 and answer["retry_after"], answer

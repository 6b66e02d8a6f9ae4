"""A gateway resending one SMS at once to several hosts (issue 17 §2): the same id
posted concurrently through real gunicorn workers books once and is answered once, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.channels.conftest import SMS_SECRET, bookings, replies_to, sign
from tests.servers import gunicorn

pytestmark = pytest.mark.slow


@pytest.fixture
def server(app, ctx, tmp_path):
    env = {
        "ANTRI_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "NIK_HASH_KEY": app.config["NIK_HASH_KEY"],
        "TICKET_KEY_DIR": app.config["TICKET_KEY_DIR"],
        "RATELIMIT_ENABLED": "false",
        "REDIS_URL": "",
        "SMS_INBOUND_SECRET": SMS_SECRET,
    }
    with gunicorn(env, workers=4, threads=4, log=tmp_path / "gunicorn.log") as url:
        yield url


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310
        f"{url}/api/v1/channels/sms",
        data=body,
        headers={"Content-Type": "application/json", "X-Antri-Signature": sign(body)},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return answer.status, json.loads(answer.read())


def test_one_sms_id_posted_at_once_books_once(server, make_slot, nik):
    slot = make_slot(capacity=5, starts_in=180)
    text = f"DAFTAR {slot.market_point.code} 03-12 13:00 {nik()} Siti Aminah"
    body = json.dumps({"id": "race-1", "from": "081234567890", "text": text}).encode()
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: _post(server, body), range(12)))
    assert all(status == 200 for status, _ in answers), answers
    statuses = sorted(answer["status"] for _, answer in answers)
    assert statuses == ["duplicate"] * 11 + ["queued"]
    assert len(bookings()) == 1
    assert [notice.ref for notice in replies_to()] == ["sms:race-1:0"]

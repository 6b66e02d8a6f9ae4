"""Meta delivering one WhatsApp message to several hosts at once (issue 17 §4): the
same message id posted concurrently through real gunicorn workers is taken once,
books once and is answered once, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.channels.conftest import WA_APP_SECRET, bookings, replies_to, sign
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
        "REDIS_URL": "",  # the job runs inline, after each response
        "WHATSAPP_APP_SECRET": WA_APP_SECRET,
        "WHATSAPP_TOKEN": "token",
        "WHATSAPP_PHONE_NUMBER_ID": "PNID",
    }
    with gunicorn(env, workers=4, threads=4, log=tmp_path / "gunicorn.log") as url:
        yield url


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310
        f"{url}/api/v1/channels/whatsapp",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(body, WA_APP_SECRET),
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return answer.status, json.loads(answer.read())


def test_one_whatsapp_message_id_posted_at_once_books_once(server, make_slot, nik):
    slot = make_slot(capacity=5, starts_in=180)
    text = f"DAFTAR {slot.market_point.code} 03-12 13:00 {nik()} Siti Aminah"
    message = {"from": "6281234567890", "id": "wamid.race", "type": "text", "text": {"body": text}}
    body = json.dumps({"entry": [{"changes": [{"value": {"messages": [message]}}]}]}).encode()
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: _post(server, body), range(12)))
    assert all(status == 200 for status, _ in answers), answers
    assert sorted(answer["received"] for _, answer in answers) == [0] * 11 + [1]
    deadline = time.monotonic() + 10  # the inline job runs after its response
    while not replies_to() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    assert len(bookings()) == 1
    assert [notice.ref for notice in replies_to()] == ["whatsapp:wamid.race:0"]

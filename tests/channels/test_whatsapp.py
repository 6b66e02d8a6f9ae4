"""WhatsApp Cloud API (issue 17 §4): verification, signed webhooks, resends dropped,
the job's answer, and replies out through a local fake Graph API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from common.timeutil import utcnow
from extensions import db
from notify.channels import DeliveryError, DeliveryRefused, Message, WhatsAppChannel
from slots.models import Notice
from tests.channels.conftest import E164, WA_APP_SECRET, WA_VERIFY, bookings, replies_to, sign


def _payload(text: str, message_id: str, sender: str = "6281234567890") -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": "PNID"},
                            "messages": [
                                {
                                    "from": sender,
                                    "id": message_id,
                                    "timestamp": "1764730800",
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


@pytest.fixture
def send_wa(client, channels_on):
    def send(text: str, message_id: str, secret: str = WA_APP_SECRET):
        body = json.dumps(_payload(text, message_id)).encode()
        answer = client.post(
            "/api/v1/channels/whatsapp",
            data=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)},
        )
        answer.close()  # the work after the response (the inline job) runs on close
        return answer

    return send


def test_the_verification_echoes_the_challenge_only_with_the_token(client, channels_on):
    ok = client.get(
        f"/api/v1/channels/whatsapp?hub.mode=subscribe&hub.verify_token={WA_VERIFY}"
        "&hub.challenge=1158201444"
    )
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444"
    wrong = client.get(
        "/api/v1/channels/whatsapp?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1"
    )
    assert wrong.status_code == 403 and wrong.json["error"] == "invalid_verify_token"


def test_a_booking_look_up_and_cancel_by_whatsapp_once_per_message(send_wa, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=180)
    text = f"DAFTAR {slot.market_point.code} 03-12 13:00 {nik()} Siti Aminah"
    answer = send_wa(text, "wamid.A1")
    assert answer.status_code == 200 and answer.json == {"received": 1}
    [booking] = bookings()  # the job ran inline, after the response
    assert booking.channel == "whatsapp" and booking.phone == E164
    [reply] = replies_to()
    assert booking.code in reply.body and reply.via == "whatsapp"
    confirmation = db.session.scalar(select(Notice).where(Notice.booking_id == booking.id))
    assert confirmation.via == "whatsapp"
    assert send_wa(text, "wamid.A1").json == {"received": 0}
    assert len(bookings()) == 1 and len(replies_to()) == 1

    send_wa(f"cek {booking.code}", "wamid.A2")
    assert booking.code in replies_to()[-1].body
    send_wa(f"batal {booking.code}", "wamid.A3")
    assert bookings()[0].status == "cancelled"


def test_the_numbered_menu_books_on_whatsapp(send_wa, make_slot):
    make_slot(capacity=3, starts_in=180)
    for n, text in enumerate(["halo", "1", "senen", "1", "1", "1", "3171041205900042", "Ani", "1"]):
        send_wa(text, f"wamid.M{n}")
    texts = [notice.body for notice in replies_to()]
    assert "1 Pesan" in texts[0] and "BANTUAN" in texts[0]
    [booking] = bookings()
    assert booking.code in texts[-1] and booking.name == "Ani"


def test_a_bad_signature_is_403_and_writes_nothing(send_wa, make_slot):
    answer = send_wa("BANTUAN", "wamid.X", secret="not-the-secret")
    assert answer.status_code == 403 and answer.json["error"] == "invalid_signature"
    assert replies_to() == []


class _FakeGraph(BaseHTTPRequestHandler):
    received: list = []
    status = 200

    def do_POST(self):  # noqa: N802  (http.server's name)
        length = int(self.headers["Content-Length"])
        type(self).received.append(
            (self.path, self.headers["Authorization"], json.loads(self.rfile.read(length)))
        )
        answer = b'{"messages": [{"id": "wamid.out"}]}'
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def graph():
    _FakeGraph.received = []
    _FakeGraph.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGraph)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v21.0", _FakeGraph
    server.shutdown()
    server.server_close()


def test_replies_go_out_through_the_graph_api(send_wa, app, monkeypatch, graph):
    url, fake = graph
    monkeypatch.setitem(app.config, "WHATSAPP_API_URL", url)
    monkeypatch.setitem(app.config, "WHATSAPP_TOKEN", "EAAG-token")
    monkeypatch.setitem(app.config, "WHATSAPP_PHONE_NUMBER_ID", "109876")
    send_wa("BANTUAN", "wamid.G1")  # the reply is handed on inline after the commit
    [(path, auth, body)] = fake.received
    assert path == "/v21.0/109876/messages" and auth == "Bearer EAAG-token"
    assert body["to"] == "6281234567890" and body["type"] == "text"
    assert "PASAR" in body["text"]["body"]
    [reply] = replies_to()
    assert reply.status == "sent" and reply.channel == "whatsapp"


def test_graph_api_errors_map_to_retry_or_refusal(graph):
    url, fake = graph
    channel = WhatsAppChannel(url, "1", "t", 5)
    message = Message("antri-notice-1", "reply", "", E164, "id", "halo")
    fake.status = 503
    with pytest.raises(DeliveryError) as retry:
        channel.send(message, repeat=False, now=utcnow())
    assert not isinstance(retry.value, DeliveryRefused)
    fake.status = 400
    with pytest.raises(DeliveryRefused):
        channel.send(message, repeat=False, now=utcnow())

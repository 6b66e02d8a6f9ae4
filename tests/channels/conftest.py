"""Fixtures of the phone channels' tests (issue 17): the gateways' secrets set, a signed
SMS poster, a market point with a bookable slot later today."""

from __future__ import annotations

import hashlib
import hmac
import json
from itertools import count

import pytest
from sqlalchemy import select

from extensions import db
from slots.models import Booking, Notice

SMS_SECRET = "sms-test-secret"
USSD_SECRET = "ussd-test-secret"
WA_APP_SECRET = "wa-app-secret"
WA_VERIFY = "wa-verify-token"
PHONE = "081234567890"
E164 = "+6281234567890"

_ids = count(1)


@pytest.fixture
def channels_on(app, ctx, monkeypatch):
    """Every channel's secret set on the app under test (restored after the test)."""
    for name, value in {
        "SMS_INBOUND_SECRET": SMS_SECRET,
        "USSD_INBOUND_SECRET": USSD_SECRET,
        "WHATSAPP_APP_SECRET": WA_APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": WA_VERIFY,
        "WHATSAPP_TOKEN": "",
    }.items():
        monkeypatch.setitem(app.config, name, value)
    return app


def sign(body: bytes, secret: str = SMS_SECRET) -> str:
    """The ``sha256=<hex>`` signature of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def send_sms(client, channels_on):
    """``send_sms(text, id=None, sender=PHONE)`` -> the response of a signed SMS post."""

    def send(text: str, message_id: str | None = None, sender: str = PHONE):
        body = json.dumps(
            {
                "id": message_id or f"m-{next(_ids)}",
                "from": sender,
                "text": text,
                "at": "2026-12-03T03:00:00Z",
            }
        ).encode()
        return client.post(
            "/api/v1/channels/sms",
            data=body,
            headers={"Content-Type": "application/json", "X-Antri-Signature": sign(body)},
        )

    return send


@pytest.fixture
def ussd(client, channels_on):
    """``ussd(session, text, phone=PHONE)`` -> the answer's text of one USSD hop."""

    def hop(session: str, text: str, phone: str = PHONE) -> str:
        answer = client.post(
            f"/api/v1/channels/ussd?key={USSD_SECRET}",
            data={
                "sessionId": session,
                "serviceCode": "*123#",
                "phoneNumber": phone,
                "text": text,
            },
        )
        assert answer.status_code == 200, answer.data
        assert answer.mimetype == "text/plain"
        return answer.get_data(as_text=True)

    return hop


def bookings() -> list[Booking]:
    """Every booking, oldest first (fresh from the database)."""
    db.session.expire_all()
    return list(db.session.scalars(select(Booking).order_by(Booking.id)))


def replies_to(phone: str = E164) -> list[Notice]:
    """The direct reply notices to ``phone``, oldest first."""
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Notice)
            .where(Notice.to_phone == phone, Notice.kind == "reply")
            .order_by(Notice.id)
        )
    )

"""``/api/v1/channels``: the gateways' webhooks for residents without a smartphone or
data (issue 17): SMS, USSD and WhatsApp. Every one checks its secret first (an unset
secret: 503 ``channel_not_configured``; a wrong one: 403 ``invalid_signature``,
nothing written), then hands the message to ``channels``."""

from __future__ import annotations

import hmac

from flask import current_app, jsonify, request
from pydantic import ValidationError as PydanticValidationError

from api import bp
from api.responses import SmsAnswerOut, WebhookAnswerOut
from api.schemas import InboundSms
from api.spec import as_api_error, json_object, validate
from channels import sms as channel_sms
from channels import ussd as channel_ussd
from channels import whatsapp as channel_whatsapp
from channels.errors import BadSignature, BadVerifyToken, ChannelNotConfigured
from common.timeutil import utcnow


def _secret(name: str) -> str:
    secret = current_app.config[name]
    if not secret:
        raise ChannelNotConfigured()
    return secret


@bp.post("/channels/sms")
@validate(403, 413, 422, ok=SmsAnswerOut, tags=("channels",))
def inbound_sms():
    """An SMS from a gateway: ``{id, from, text, at}`` signed ``X-Antri-Signature:
    sha256=<hex HMAC-SHA256 of the body with SMS_INBOUND_SECRET>`` -> 200 with the
    replies queued in the outbox (``duplicate`` for an ``id`` seen before); 403
    ``invalid_signature``; 422 for a body that is not an SMS or a sender that is not
    an Indonesian mobile number."""
    secret = _secret("SMS_INBOUND_SECRET")
    raw = request.get_data(cache=True)
    if not channel_sms.signature_ok(raw, request.headers.get(channel_sms.SIGNATURE_HEADER), secret):
        raise BadSignature()
    try:
        message = InboundSms.model_validate(json_object())
    except PydanticValidationError as err:
        raise as_api_error(err, InboundSms) from None
    answer = channel_sms.take_sms(message.id, message.sender, message.text, utcnow())
    return jsonify({"id": message.id, "status": answer.status, "replies": answer.replies})


@bp.post("/channels/ussd")
@validate(403, 413, ok=None, media="text/plain", tags=("channels",))
def inbound_ussd():
    """One USSD hop: form fields ``sessionId``, ``serviceCode``, ``phoneNumber``,
    ``text`` (the choices so far joined by ``*``), the callback URL carrying
    ``?key=<USSD_INBOUND_SECRET>`` -> ``text/plain`` ``CON <screen>`` or ``END
    <screen>``, each screen at most 182 GSM 7-bit characters."""
    secret = _secret("USSD_INBOUND_SECRET")
    if not hmac.compare_digest(request.args.get("key", "").encode(), secret.encode()):
        raise BadSignature()
    form = request.form
    body = channel_ussd.answer_ussd(
        form.get("sessionId", "")[:128],
        form.get("phoneNumber", ""),
        form.get("text", "")[:500],
        utcnow(),
    )
    return body, 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/channels/whatsapp")
@validate(403, ok=None, media="text/plain", tags=("channels",))
def whatsapp_verification():
    """Meta's webhook verification: ``hub.mode=subscribe``, ``hub.verify_token`` equal
    to WHATSAPP_VERIFY_TOKEN -> ``hub.challenge`` echoed as text; else 403."""
    token = _secret("WHATSAPP_VERIFY_TOKEN")
    given = request.args.get("hub.verify_token", "")
    if request.args.get("hub.mode") != "subscribe" or not hmac.compare_digest(
        given.encode(), token.encode()
    ):
        raise BadVerifyToken()
    challenge = request.args.get("hub.challenge", "")[:200]
    return challenge, 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.post("/channels/whatsapp")
@validate(403, 413, 422, ok=WebhookAnswerOut, tags=("channels",))
def whatsapp_webhook():
    """WhatsApp messages from Meta, signed ``X-Hub-Signature-256`` with
    WHATSAPP_APP_SECRET -> 200 at once with how many new messages were taken (a
    message id seen before is dropped); a job answers each one."""
    secret = _secret("WHATSAPP_APP_SECRET")
    raw = request.get_data(cache=True)
    header = request.headers.get(channel_whatsapp.SIGNATURE_HEADER)
    if not channel_whatsapp.signature_ok(raw, header, secret):
        raise BadSignature()
    received = channel_whatsapp.take_webhook(json_object(), utcnow())
    return jsonify({"received": received})

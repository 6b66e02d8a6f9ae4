"""WhatsApp Cloud API (issue 17 §4): the webhook's verification and messages in, the
work in a job, replies out through the outbox's ``whatsapp`` channel
(``notify.channels.WhatsAppChannel``).

``POST`` is checked (X-Hub-Signature-256 with WHATSAPP_APP_SECRET), each message is
claimed by its id with its text kept (``channels.inbound.claim``: a message Meta sends
again is dropped), and the request answers 200 at once; after the commit each new
message goes to a job (``jobs.handle_inbound``; inline, after the response, without
REDIS_URL), which takes it once (``take_for_handling``) and answers it through the
conversation (keywords and the numbered menu, ``channels.chat``).
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy.orm import Session

from channels.chat import answer_message
from channels.inbound import claim, take_for_handling
from channels.models import WHATSAPP
from common import transactions
from common.errors import ValidationError
from slots.identity import normalise_phone

log = logging.getLogger("antri.channels")

# ``session.info`` key of the inbound rows this transaction claimed, for the job hand-over.
NEW_INBOUND = "channels_new_inbound"
# ``app.extensions`` key of the function that enqueues the job (``jobs.enqueue_inbound``).
ENQUEUE_KEY = "channels.enqueue_inbound"
SIGNATURE_HEADER = "X-Hub-Signature-256"


def init_app(app: Flask, enqueue: Callable[[Flask, list[int]], None]) -> None:
    """Hand the messages a webhook claimed to ``enqueue(app, row ids)`` after the commit
    (with REDIS_URL), or handle them inline after the response (without)."""
    app.extensions[ENQUEUE_KEY] = enqueue
    transactions.add_after_commit(app, _hand_on)


def signature_ok(raw_body: bytes, header: str | None, secret: str) -> bool:
    """True when ``header`` is ``sha256=<hex HMAC-SHA256 of raw_body with secret>``
    (Meta's X-Hub-Signature-256; constant-time compare)."""
    import hashlib

    if not secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256=") :].strip().lower())


def _text_of(message: dict[str, Any]) -> str:
    """The text a resident sent: a text message's body, a button's or list row's
    title; "" for anything else (an image, a sticker: answered with the menu)."""
    kind = message.get("type")
    if kind == "text":
        return str((message.get("text") or {}).get("body") or "")
    if kind == "interactive":
        interactive = message.get("interactive") or {}
        reply = interactive.get("button_reply") or interactive.get("list_reply") or {}
        return str(reply.get("id") or reply.get("title") or "")
    if kind == "button":
        return str((message.get("button") or {}).get("text") or "")
    return ""


def take_webhook(payload: Any, now: datetime) -> int:
    """Claim every new message of a webhook ``payload`` (Meta's JSON), keeping its text
    for the job; delivery statuses and messages from numbers Antri cannot book for
    (not Indonesian mobiles) are skipped.

    Returns: how many new messages were claimed (noted for the job hand-over).
    Raises: ValidationError ``invalid_json`` when ``payload`` is not Meta's shape.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("entry", []), list):
        raise ValidationError("Send the WhatsApp webhook's JSON.", code="invalid_json")
    claimed = []
    for entry in payload.get("entry") or []:
        for change in (entry or {}).get("changes") or [] if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            for message in (value or {}).get("messages") or [] if isinstance(value, dict) else []:
                if not isinstance(message, dict) or not message.get("id"):
                    continue
                try:
                    phone = normalise_phone(str(message.get("from") or ""))
                except ValidationError:
                    log.info("whatsapp message from a number Antri cannot book for: skipped")
                    continue
                text = _text_of(message)[:1000]
                row_id = claim(WHATSAPP, str(message["id"])[:128], phone, now, body=text)
                if row_id is not None:
                    claimed.append(row_id)
    from extensions import db

    db.session.info.setdefault(NEW_INBOUND, []).extend(claimed)
    return len(claimed)


def handle_stored(row_id: int, now: datetime) -> list[str]:
    """Job body: answer stored message ``row_id`` once (a second run finds it handled
    and does nothing). Returns: the reply texts written."""
    taken = take_for_handling(row_id, now)
    if taken is None:
        return []
    return answer_message(WHATSAPP, taken.message_id, taken.phone, taken.body, now)


def _hand_on(session: Session) -> Callable[[], None] | None:
    """After-commit hook: the messages claimed in this transaction, to their job."""
    ids = session.info.pop(NEW_INBOUND, [])
    if not ids:
        return None
    app = current_app._get_current_object()
    return functools.partial(app.extensions[ENQUEUE_KEY], app, ids)

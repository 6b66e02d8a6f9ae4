"""The channels that carry a message to a resident, behind one small interface.

``log`` (the default) appends one JSON line per message to NOTIFY_LOG_FILE; ``webhook``
POSTs the message as JSON to an SMS/WhatsApp gateway, signed with a shared secret.

Delivery is exactly once only if a repeat of the same message is harmless: a worker
may die after the channel took a message but before the outbox row was marked sent,
and the next claim sends it again. So every message carries a stable ``id``; the log
channel writes a line for an id once, and the webhook sends the id as the
``Idempotency-Key`` header for the gateway to drop a repeat (docs: README, "Messages").
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from flask import current_app


@dataclass(frozen=True)
class Message:
    """One message to one resident.

    Fields: id, ``antri-notice-<notice id>``, the same on every attempt; kind, a
    ``slots.models.NOTICE_KINDS`` value; booking, the booking code; to, an E.164 phone
    number; language, "id" or "en"; text, the message itself (with the ticket link).
    """

    id: str
    kind: str
    booking: str
    to: str
    language: str
    text: str


class DeliveryError(Exception):
    """The channel could not take the message now (network, gateway 5xx): retry later."""


class DeliveryRefused(DeliveryError):
    """The channel refused the message for good (gateway 4xx): do not retry."""


class Channel(Protocol):
    """What the outbox needs of a channel."""

    name: str

    def send(self, message: Message, *, repeat: bool, now: datetime) -> None:
        """Hand ``message`` over once.

        Args: repeat, True when an earlier attempt of this message may have gone
          through (the channel must then not deliver it twice); now, aware UTC.
        Raises: DeliveryError to be retried later, DeliveryRefused never to be.
        """


class LogChannel:
    """Appends one JSON line per message to a file (``NOTIFY_LOG_FILE``).

    The line is written under an exclusive ``flock`` on the file, and a repeat looks
    for its id first, so concurrent workers and retries never write a message twice.
    """

    name = "log"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: Message, *, repeat: bool, now: datetime) -> None:
        """Append ``message`` as one JSON line (``at`` = ``now``); see ``Channel.send``.

        Raises: DeliveryError when the file cannot be written.
        """
        line = json.dumps({"at": now.isoformat(), **asdict(message)}, ensure_ascii=False)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                if repeat and self._written(handle, message.id):
                    return
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())  # sent means on disk before the row says so
        except OSError as exc:
            raise DeliveryError(f"cannot write {self.path}: {exc.strerror}") from exc

    @staticmethod
    def _written(handle, message_id: str) -> bool:
        """True when the file already holds a line for ``message_id``."""
        handle.seek(0)
        needle = json.dumps(message_id)
        for line in handle:
            if needle in line:
                try:
                    if json.loads(line).get("id") == message_id:
                        return True
                except ValueError:
                    continue  # a torn line of a crashed writer is not this message
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would turn the POST into a GET without the
    message and report the GET's answer as a delivery."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: PLR0913
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class WebhookChannel:
    """POSTs each message as JSON to a gateway URL.

    Headers: ``Idempotency-Key`` (the message id: a gateway drops repeats by it),
    ``X-Antri-Signature: sha256=<hex HMAC-SHA256 of the body with the shared secret>``.
    A 2xx answer is delivery; 408, 425, 429 and 5xx, timeouts and network errors are
    retried; any other status (3xx included: a moved gateway is a configuration to
    fix) is a refusal.
    """

    name = "webhook"

    def __init__(self, url: str, secret: str, timeout: float) -> None:
        self.url = url
        self.secret = secret.encode()
        self.timeout = timeout

    def send(self, message: Message, *, repeat: bool, now: datetime) -> None:
        """POST ``message``; see ``Channel.send``. Raises DeliveryError, DeliveryRefused."""
        body = json.dumps({**asdict(message), "at": now.isoformat()}).encode()
        signature = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(  # noqa: S310 (the URL is checked http(s) in config)
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": message.id,
                "X-Antri-Signature": f"sha256={signature}",
            },
        )
        try:
            with _OPENER.open(request, timeout=self.timeout) as answer:
                answer.read(1024)
        except urllib.error.HTTPError as exc:
            with exc:
                status = exc.code
            if status in (408, 425, 429) or status >= 500:
                raise DeliveryError(f"gateway answered {status}") from exc
            raise DeliveryRefused(f"gateway refused with {status}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"gateway unreachable: {exc}") from exc


def channel_from_config() -> Channel:
    """Return the channel NOTIFY_CHANNEL names, set up from the app's config."""
    config = current_app.config
    if config["NOTIFY_CHANNEL"] == "webhook":
        return WebhookChannel(
            config["NOTIFY_WEBHOOK_URL"],
            config["NOTIFY_WEBHOOK_SECRET"],
            config["NOTIFY_WEBHOOK_TIMEOUT"],
        )
    return LogChannel(Path(config["NOTIFY_LOG_FILE"]))

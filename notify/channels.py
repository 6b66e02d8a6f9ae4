"""The channels that carry a message to a resident, behind one small interface.

``log`` (the default) appends one JSON line per message to NOTIFY_LOG_FILE; ``webhook``
POSTs the message as JSON to an SMS/WhatsApp gateway, signed with a shared secret;
``whatsapp`` sends it through Meta's WhatsApp Cloud API (issue 17), for the messages
whose ``via`` names it.

Delivery is exactly once only if a repeat of the same message is harmless: a worker
may die after the channel took a message but before the outbox row was marked sent,
and the next claim sends it again. So every message carries a stable ``id``; the log
channel writes a line for an id once, and the webhook sends the id as the
``Idempotency-Key`` header for the gateway to drop a repeat (docs: README, "Messages").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import http.client
import json
import os
import socket
import threading
import urllib.parse
from collections.abc import Callable
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


class Superseded(Exception):
    """The sender's claim on the message was taken over while it worked (it stalled
    past its lease): the message was not handed over by this sender."""


def _always(*_: object) -> bool:
    return True


class Channel(Protocol):
    """What the outbox needs of a channel."""

    name: str

    def send(
        self, message: Message, *, repeat: bool, now: datetime, fence: Callable[[], bool]
    ) -> None:
        """Hand ``message`` over once.

        Args: repeat, True when an earlier attempt of this message may have gone
          through (the channel must then not deliver it twice); now, aware UTC;
          fence, True while the caller's claim on the message still holds: checked
          right before delivering.
        Raises: DeliveryError to be retried later, DeliveryRefused never to be,
          Superseded when the fence says the claim is gone.
        """


class LogChannel:
    """Appends one JSON line per message to a file (``NOTIFY_LOG_FILE``).

    The line is written under an exclusive ``flock`` on the file, after checking the
    fence (a stalled sender whose claim was taken over writes nothing) and, for a
    repeat, that no line has this id yet: so workers, retries and stalls never write a
    message twice. First attempts skip the search, which reads the whole file: rotate
    the file (it holds phone numbers) within RETENTION_DAYS.
    """

    name = "log"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(
        self,
        message: Message,
        *,
        repeat: bool,
        now: datetime,
        fence: Callable[[], bool] = _always,
    ) -> None:
        """Append ``message`` as one JSON line (``at`` = ``now``); see ``Channel.send``.

        Raises: DeliveryError when the file cannot be written; Superseded.
        """
        line = json.dumps({"at": now.isoformat(), **asdict(message)}, ensure_ascii=False)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                if not fence():
                    raise Superseded(message.id)
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


class WebhookChannel:
    """POSTs each message as JSON to a gateway URL.

    Headers: ``Idempotency-Key`` (the message id: a gateway drops repeats by it),
    ``X-Antri-Signature: sha256=<hex HMAC-SHA256 of the body with the shared secret>``.
    A 2xx answer is delivery; 408, 425, 429 and 5xx, timeouts and network errors are
    retried; any other status (3xx included: redirects are not followed, a moved
    gateway is a configuration to fix) is a refusal. The whole exchange must end
    within ``timeout`` seconds, however slowly the gateway trickles its answer, so a
    sender never outlives its claim (NOTIFY_LEASE_SECONDS is checked to be longer).
    """

    name = "webhook"

    def __init__(self, url: str, secret: str, timeout: float) -> None:
        self.url = urllib.parse.urlsplit(url)
        self.secret = secret.encode()
        self.timeout = timeout

    def send(
        self,
        message: Message,
        *,
        repeat: bool,
        now: datetime,
        fence: Callable[[], bool] = _always,
    ) -> None:
        """POST ``message``; see ``Channel.send``.

        Raises: DeliveryError, DeliveryRefused, Superseded.
        """
        body = json.dumps({**asdict(message), "at": now.isoformat()}).encode()
        signature = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.id,
            "X-Antri-Signature": f"sha256={signature}",
        }
        _post(self.url, body, headers, self.timeout, fence, message.id, "gateway")


def _post(
    url: urllib.parse.SplitResult,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    fence: Callable[[], bool],
    message_id: str,
    peer: str,
) -> None:
    """POST ``body`` to ``url`` for a channel: the webhook gateway and the WhatsApp
    Graph API answer alike. ``fence`` is checked right before the request (False:
    Superseded, nothing sent for ``message_id``); the whole exchange ends within
    ``timeout`` seconds, however slowly the peer trickles its answer; redirects are
    not followed.
    Raises: DeliveryError for 408, 425, 429, 5xx, a timeout or a network fault (retry);
      DeliveryRefused for any other status but 2xx (``peer`` names it in the error).
    """
    kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    connection = kind(url.hostname, url.port, timeout=timeout)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    # The socket timeout bounds each read; this bounds the whole exchange.
    deadline = threading.Timer(timeout, _cut, args=(connection,))
    if not fence():
        raise Superseded(message_id)
    deadline.start()
    try:
        connection.request("POST", path, body=body, headers=headers)
        with connection.getresponse() as answer:
            answer.read(4096)
            status = answer.status
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{peer} unreachable or too slow: {exc!r}") from exc
    finally:
        deadline.cancel()
        connection.close()
    if 200 <= status < 300:
        return
    if status in (408, 425, 429) or status >= 500:
        raise DeliveryError(f"{peer} answered {status}")
    raise DeliveryRefused(f"{peer} refused with {status}")


def _cut(connection: http.client.HTTPConnection) -> None:
    """End a gateway exchange that ran out of time (the blocked read then fails)."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # closed already: nothing left to cut
            sock.shutdown(socket.SHUT_RDWR)


class WhatsAppChannel:
    """Sends each message as a WhatsApp text through Meta's Cloud API (issue 17 §4):
    ``POST <api_url>/<phone_number_id>/messages`` with ``Authorization: Bearer <token>``
    and ``{"messaging_product": "whatsapp", "to": <digits>, "type": "text", "text":
    {"body": ...}}``. The Graph API has no idempotency key: a repeat after a worker died
    mid-send may reach the resident twice (the relay's lease makes that rare). Statuses
    as ``WebhookChannel``: 2xx delivered; 408, 425, 429, 5xx and network faults retried;
    any other refused for good (a bad token, a number not on WhatsApp).
    """

    name = "whatsapp"

    def __init__(self, api_url: str, phone_number_id: str, token: str, timeout: float) -> None:
        self.url = urllib.parse.urlsplit(f"{api_url.rstrip('/')}/{phone_number_id}/messages")
        self.token = token
        self.timeout = timeout

    def send(
        self,
        message: Message,
        *,
        repeat: bool,
        now: datetime,
        fence: Callable[[], bool] = _always,
    ) -> None:
        """POST ``message`` to the Graph API; see ``Channel.send``.

        Raises: DeliveryError, DeliveryRefused, Superseded.
        """
        body = json.dumps(
            {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": message.to.lstrip("+"),
                "type": "text",
                "text": {"preview_url": True, "body": message.text},
            }
        ).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        _post(self.url, body, headers, self.timeout, fence, message.id, "WhatsApp API")


def whatsapp_from_config() -> Channel:
    """The ``whatsapp`` channel set up from WHATSAPP_API_URL, WHATSAPP_PHONE_NUMBER_ID
    and WHATSAPP_TOKEN. In development without a token (``make run``, the simulator)
    the log channel stands in, so a conversation can be tried without Meta; in
    production the config refuses a WhatsApp secret without the token."""
    config = current_app.config
    if not config["WHATSAPP_TOKEN"]:
        return LogChannel(Path(config["NOTIFY_LOG_FILE"]))
    return WhatsAppChannel(
        config["WHATSAPP_API_URL"],
        config["WHATSAPP_PHONE_NUMBER_ID"],
        config["WHATSAPP_TOKEN"],
        config["NOTIFY_WEBHOOK_TIMEOUT"],
    )


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


def channel_named(name: str) -> Channel:
    """Return the channel a notice's ``via`` names: "" or NOTIFY_CHANNEL's own name is
    the configured default (``channel_from_config``); other names are the channels
    added for a conversation's replies (issue 17).
    Raises: DeliveryRefused for a name no channel has (the notice fails for good and
      admins see it, rather than retrying forever)."""
    if name == WhatsAppChannel.name:
        return whatsapp_from_config()
    default = channel_from_config()
    if name in ("", default.name):
        return default
    raise DeliveryRefused(f"no channel named {name!r}")

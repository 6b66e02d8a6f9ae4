"""The live feed: occupancy events over Redis pub/sub, pushed as Server-Sent Events.

Path of an event: a service records it (``common.events.record``) in the transaction
that made the change; after the commit ``RedisPublisher`` publishes it as JSON on the
channel ``LIVE_CHANNEL`` (default ``antri:live``); in every app process one ``Hub``
thread is subscribed to that channel and hands each message to the queues of the
streams open in that process; each stream (``GET /api/v1/occupancy/stream`` and the
supervisor pages' EventSource) writes it out as an SSE ``data:`` line with an ``id:``.

Event shape (JSON): {id, kind, point_id, market_point, at, ...} where ``kind`` is
``check_in``, ``check_out``, ``wait``, ``refused`` (scans, with ``inside_now``,
``safe_limit``, ``direction``, ``reason``, ``booking_id``), ``booking`` or
``cancellation`` (with ``slot_id``, ``booking_id``). No names, phones or NIKs.
Each stream opens with a ``snapshot`` event holding every row of
``checkin.service.overview`` for the points it may see, so a reconnect resyncs.

Without Redis (``REDIS_URL`` unset) nothing is published and the stream answers 503
``live_unavailable``; pages then poll ``/api/v1/occupancy/overview``. Publishing never
fails or slows a request: short socket timeouts, errors logged and swallowed, and after
a failure Redis is left alone for ``LIVE_RETRY_SECONDS`` before the next try.

Each open stream holds one server thread for its lifetime: serve with gunicorn's
threaded worker (``--worker-class gthread --threads N``), N above the number of
supervisors' screens per worker plus the threads for ordinary requests.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Flask

from common.events import PUBLISHER

log = logging.getLogger("antri.live")

HUB = "antri_live_hub"
# A stream that cannot keep up (a stuck client) is ended rather than let it grow.
QUEUE_LIMIT = 1000
_END = None  # the queue item that ends a stream (Redis lost, or the stream lagged)


class RedisPublisher:
    """Publish committed events on a Redis channel; callable as ``publisher(events)``.

    Args: url, the Redis URL; channel, the pub/sub channel name; timeout, the socket
      timeouts in seconds; retry_seconds, how long to leave Redis alone after a failure.
    """

    def __init__(
        self, url: str, channel: str, timeout: float = 0.25, retry_seconds: float = 5.0
    ) -> None:
        self.channel = channel
        self.retry_seconds = retry_seconds
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._down_until = 0.0
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-"

    def __call__(self, events: list[dict[str, Any]]) -> None:
        """Publish ``events`` (JSON-safe dicts) in order, one round trip; each gets an
        ``id`` unique across processes. Never raises: a failure is logged, the events
        are dropped (live pages resync from the database on reconnect)."""
        if time.monotonic() < self._down_until:
            return
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            event.setdefault("id", f"{int(time.time() * 1000)}-{self._prefix}{next(self._ids)}")
            pipe.publish(self.channel, json.dumps(event, separators=(",", ":")))
        try:
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._down_until = time.monotonic() + self.retry_seconds
            log.warning(
                "live feed: Redis publish failed (%s); %d events dropped, next try in %.0f s",
                exc,
                len(events),
                self.retry_seconds,
            )


class Hub:
    """One process's subscription to the live channel, shared by all its streams.

    A daemon thread, started by the first stream, reads the channel and puts every
    message on each registered stream's queue. When Redis goes away every open stream
    is ended (the browser reconnects, gets 503 while Redis is down and polls); the
    thread keeps trying to reconnect, backing off up to 5 s.
    """

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel
        self.connected = threading.Event()
        self._queues: set[queue.Queue] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._started = 0.0

    def ensure_running(self, wait: float = 1.0) -> bool:
        """Start the reader thread in this process if needed and wait until ``wait``
        seconds after its start for it to subscribe; a thread running longer but cut
        off from Redis is not waited for (it reconnects on its own).
        Returns: True when subscribed."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()  # a forked worker needs a thread of its own
                self.connected.clear()
                self._queues = set()
                self._started = time.monotonic()
                self._thread = threading.Thread(target=self._run, name="antri-live", daemon=True)
                self._thread.start()
        return self.connected.wait(max(0.0, self._started + wait - time.monotonic()))

    def subscribe(self) -> queue.Queue:
        """Register a stream; returns the queue its events (JSON text, point id) arrive on."""
        q: queue.Queue = queue.Queue(maxsize=QUEUE_LIMIT)
        with self._lock:
            self._queues.add(q)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        """Forget a stream's queue (the stream ended)."""
        with self._lock:
            self._queues.discard(q)

    @property
    def streams(self) -> int:
        """Number of open streams in this process."""
        return len(self._queues)

    def _broadcast(self, item: tuple[str, dict] | None) -> None:
        with self._lock:
            targets = list(self._queues)
        for q in targets:
            try:
                q.put_nowait(item)
            except queue.Full:  # a stream this far behind is ended; it reconnects fresh
                self.unsubscribe(q)
                with q.mutex:
                    q.queue.clear()
                q.put_nowait(_END)

    def _run(self) -> None:
        backoff = 0.2
        while True:
            client = redis.Redis.from_url(
                self.url, socket_connect_timeout=1, socket_timeout=5, health_check_interval=10
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.connected.set()
                backoff = 0.2
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message["type"] != "message":
                        continue
                    try:
                        event = json.loads(message["data"])
                    except ValueError:
                        log.warning("live feed: a message that is not JSON was ignored")
                        continue
                    if isinstance(event, dict):
                        self._broadcast((message["data"].decode(), event))
            except (redis.RedisError, OSError) as exc:
                if self.connected.is_set():
                    log.warning("live feed: lost Redis (%s); ending open streams", exc)
                self.connected.clear()
                self._broadcast(_END)
            finally:
                try:
                    pubsub.close()
                    client.close()
                except (redis.RedisError, OSError):
                    pass
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def init_app(app: Flask) -> None:
    """Give ``app`` a publisher and a hub when ``REDIS_URL`` is set (nothing connects
    here: the publisher connects on first use, the hub with the first stream)."""
    url = app.config.get("REDIS_URL")
    if not url:
        app.extensions.pop(PUBLISHER, None)
        app.extensions.pop(HUB, None)
        return
    channel = app.config["LIVE_CHANNEL"]
    app.extensions[PUBLISHER] = RedisPublisher(
        url, channel, retry_seconds=app.config["LIVE_RETRY_SECONDS"]
    )
    app.extensions[HUB] = Hub(url, channel)


def sse(data: str, event_id: str | None = None) -> str:
    """Format one SSE message: optional ``id:`` line, the ``data:`` line(s), a blank line."""
    lines = [f"id: {event_id}"] if event_id else []
    lines += [f"data: {line}" for line in data.split("\n")]
    return "\n".join(lines) + "\n\n"


def stream(
    hub: Hub,
    q: queue.Queue,
    snapshot: list[dict],
    point_ids: set[int] | None,
    heartbeat: float,
    max_seconds: float,
) -> Iterator[str]:
    """Yield the SSE text of one stream: a ``retry:`` hint, the snapshot, then every
    event for ``point_ids`` (None: every point), with a comment line after each
    ``heartbeat`` seconds of quiet so proxies keep the connection and a gone client is
    noticed. Ends after ``max_seconds`` (the client reconnects) or when Redis is lost.
    Always unregisters ``q``."""
    try:
        yield "retry: 2000\n\n"
        yield sse(json.dumps({"kind": "snapshot", "points": snapshot}), f"snapshot-{time.time()}")
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            try:
                item = q.get(timeout=heartbeat)
            except queue.Empty:
                yield ": keepalive\n\n"
                continue
            if item is _END:
                return
            text, event = item
            if point_ids is None or event.get("point_id") in point_ids:
                yield sse(text, str(event.get("id", "")) or None)
    finally:
        hub.unsubscribe(q)

"""The live feed: occupancy events over Redis pub/sub, pushed as Server-Sent Events.

Path of an event: a service records it (``common.events.record``) in the transaction
that made the change; after the commit ``RedisPublisher`` publishes it as JSON on the
channel ``LIVE_CHANNEL`` (default ``antri:live``); in every app process one ``Hub``
thread is subscribed to that channel and hands each message to the queues of the
streams open in that process; each stream (``GET /api/v1/occupancy/stream`` and the
supervisor pages' EventSource) writes it out as an SSE ``data:`` line with an ``id:``.

Event shape (JSON): {id, kind, point_id, market_point, at, ...} where ``kind`` is
``check_in``, ``check_out``, ``wait``, ``refused`` (scans, with ``inside_now``,
``safe_limit``, ``direction``, ``reason``, ``booking_id``), ``booking``,
``cancellation``, ``no_show`` (with ``slot_id``, ``booking_id``), ``waiting_list``
(a resident joined, left or was promoted from a slot's waiting list, or it expired;
``slot_id``, ``action``) or ``slot_closed`` (``slot_id``). No names, phones or NIKs.
An event means "this point's numbers changed": pages re-read the point's overview row
(``/api/v1/occupancy/overview?market_point=CODE``) rather than add up events, so an
event that arrives late, twice or out of order cannot leave a wrong number.
Each stream opens with a ``snapshot`` event holding every row of
``checkin.occupancy.overview`` for the points it may see, so a reconnect resyncs.

Without Redis (``REDIS_URL`` unset) nothing is published and the stream answers 503
``live_unavailable``; pages then poll ``/api/v1/occupancy/overview``. Publishing never
fails or slows a request: short socket timeouts, errors logged and swallowed; after a
failure the events wait in a bounded buffer and a timer thread (or the hub, as soon
as it is subscribed again) publishes them, so events of an outage arrive late rather
than never.

Each open stream holds one server thread for its lifetime: serve with gunicorn's
threaded worker (``--worker-class gthread --threads N``), N above
``LIVE_MAX_STREAMS_PER_PROCESS`` plus the threads for ordinary requests. Streams past
that cap, or past ``LIVE_MAX_STREAMS_PER_USER`` for one account in one process, are
refused with 503 and a ``Retry-After``. A stream whose client stops reading is cut
after ``LIVE_WRITE_TIMEOUT_SECONDS`` blocked in a write (under gunicorn, which hands
the socket to the app; another server keeps the thread until the client goes).
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.events import PUBLISHER

log = logging.getLogger("antri.live")

HUB = "antri_live_hub"
# A stream that cannot keep up (a stuck client) is ended rather than let it grow.
QUEUE_LIMIT = 1000
_END = None  # the queue item that ends a stream (Redis lost, or the stream lagged)
# Events kept while Redis is away (oldest dropped first); pages resync on reconnect.
PENDING_LIMIT = 1000
# The hub pings Redis this often and gives the connection up after this long without
# a word (a Redis that accepts but never answers sends no error to notice).
PING_SECONDS = 5.0
SILENCE_LIMIT = 15.0


class RedisPublisher:
    """Publish committed events on a Redis channel; callable as ``publisher(events)``.

    Args: url, the Redis URL; channel, the pub/sub channel name; timeout, the socket
      timeouts in seconds; retry_seconds, how long to wait before publishing again
      after a failure; pending_limit, events kept meanwhile (count, oldest dropped).
    """

    def __init__(
        self,
        url: str,
        channel: str,
        timeout: float = 0.25,
        retry_seconds: float = 5.0,
        pending_limit: int = PENDING_LIMIT,
    ) -> None:
        self.channel = channel
        self.retry_seconds = retry_seconds
        # No retries inside redis-py: one failed try costs a request at most ``timeout``
        # twice (connect, answer); the timer retries later.
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._down_until = 0.0
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid()}-"
        self._pending: collections.deque[str] = collections.deque(maxlen=pending_limit)
        self._lock = threading.Lock()  # guards _pending, _down_until, _timer
        self._flushing = threading.Lock()  # one round trip at a time
        self._timer: threading.Timer | None = None
        self._pid = os.getpid()

    @property
    def pending(self) -> int:
        """Events waiting for Redis to come back (count)."""
        return len(self._pending)

    def __call__(self, events: list[dict[str, Any]]) -> None:
        """Publish ``events`` (JSON-safe dicts) in order, one round trip; each gets an
        ``id`` unique across processes. Never raises. While Redis is failing the
        events wait (at most ``pending_limit``) and a timer publishes them later; a
        request never waits for that."""
        texts = []
        for event in events:
            event.setdefault("id", f"{int(time.time() * 1000)}-{self._prefix}{next(self._ids)}")
            texts.append(json.dumps(event, separators=(",", ":")))
        with self._lock:
            self._pending.extend(texts)
            if time.monotonic() < self._down_until:
                self._schedule_retry()
                return
        self.flush()

    def flush(self) -> bool:
        """Publish every waiting event now, in order. Returns True when none is left
        waiting. On failure they stay (bounded) and a retry is scheduled."""
        with self._flushing:
            with self._lock:
                batch = list(self._pending)
                self._pending.clear()
            if not batch:
                return True
            pipe = self._client.pipeline(transaction=False)
            for text in batch:
                pipe.publish(self.channel, text)
            try:
                pipe.execute()
            except (redis.RedisError, OSError) as exc:
                with self._lock:
                    self._pending.extendleft(reversed(batch))  # newer events stay after
                    self._down_until = time.monotonic() + self.retry_seconds
                    self._schedule_retry()
                log.warning(
                    "live feed: Redis publish failed (%s); %d events wait, next try in %.0f s",
                    exc,
                    len(self._pending),
                    self.retry_seconds,
                )
                return False
            with self._lock:
                self._down_until = 0.0
            return True

    def redis_is_back(self) -> None:
        """Called by the hub when it subscribed again: publish what waits, now."""
        with self._lock:
            self._down_until = 0.0
            waiting = bool(self._pending)
        if waiting:
            self.flush()

    def _schedule_retry(self) -> None:
        """Start the retry timer unless one is set (callers hold ``_lock``)."""
        if self._pid != os.getpid():  # a timer of the parent does not run in a fork
            self._pid, self._timer = os.getpid(), None
        if self._timer is not None and self._timer.is_alive():
            return
        delay = max(0.05, self._down_until - time.monotonic())
        self._timer = threading.Timer(delay, self._retry)
        self._timer.daemon = True
        self._timer.start()

    def _retry(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()


class StreamLimit(Exception):
    """No stream may open now: this process or this account has its maximum open."""


class Hub:
    """One process's subscription to the live channel, shared by all its streams.

    A daemon thread, started by the first stream, reads the channel and puts every
    message on each registered stream's queue. When Redis goes away, or stays silent
    for ``silence_limit`` seconds although pinged every ``ping_seconds``, every open
    stream is ended (the browser reconnects, gets 503 while Redis is down and polls);
    the thread keeps trying to reconnect, backing off up to 5 s, and tells
    ``on_connect`` (the publisher) each time it is subscribed again.
    """

    def __init__(
        self,
        url: str,
        channel: str,
        on_connect: Callable[[], None] | None = None,
        ping_seconds: float = PING_SECONDS,
        silence_limit: float = SILENCE_LIMIT,
    ) -> None:
        self.url = url
        self.channel = channel
        self.on_connect = on_connect
        self.ping_seconds = ping_seconds
        self.silence_limit = silence_limit
        self.connected = threading.Event()
        self._queues: dict[queue.Queue, str] = {}
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
                self._queues = {}
                self._started = time.monotonic()
                self._thread = threading.Thread(target=self._run, name="antri-live", daemon=True)
                self._thread.start()
        return self.connected.wait(max(0.0, self._started + wait - time.monotonic()))

    def subscribe(
        self, owner: str = "", max_streams: int | None = None, max_per_owner: int | None = None
    ) -> queue.Queue:
        """Register a stream of ``owner`` (e.g. ``"user:7"``); returns the queue its
        events (JSON text, event dict) arrive on.

        Raises: StreamLimit when ``max_streams`` streams are open in this process, or
          ``max_per_owner`` of ``owner``'s (None: no cap).
        """
        q: queue.Queue = queue.Queue(maxsize=QUEUE_LIMIT)
        with self._lock:
            if max_streams is not None and len(self._queues) >= max_streams:
                raise StreamLimit("process")
            if max_per_owner is not None:
                mine = sum(1 for who in self._queues.values() if who == owner)
                if mine >= max_per_owner:
                    raise StreamLimit("owner")
            self._queues[q] = owner
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        """Forget a stream's queue (the stream ended)."""
        with self._lock:
            self._queues.pop(q, None)

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

    def _handle(self, message: dict) -> None:
        """Hand one pub/sub message to the streams; a message that is not a JSON
        object is logged and dropped."""
        data = message["data"]
        try:
            text = data.decode() if isinstance(data, bytes) else str(data)
            event = json.loads(text)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            log.warning("live feed: a message that is not UTF-8 JSON was ignored")
            return
        if isinstance(event, dict):
            self._broadcast((text, event))
        else:
            log.warning("live feed: a message that is not a JSON object was ignored")

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        """Read messages until the connection fails or falls silent (raises then)."""
        pubsub.subscribe(self.channel)
        # The subscription counts only once Redis confirms it: a Redis that accepts
        # connections but never answers must not look connected.
        confirmed = time.monotonic() + self.silence_limit
        while True:
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "subscribe":
                break
            if time.monotonic() > confirmed:
                raise redis.TimeoutError("no subscription confirmation from Redis")
        self.connected.set()
        if self.on_connect is not None:
            try:
                self.on_connect()
            except Exception:  # the publisher's trouble must not stop the feed
                log.exception("live feed: on_connect failed")
        heard = pinged = time.monotonic()
        while True:
            message = pubsub.get_message(timeout=1.0)
            now = time.monotonic()
            if message is not None:
                heard = now
                if message["type"] == "message":
                    try:
                        self._handle(message)
                    except Exception:  # one bad message must not end the feed
                        log.exception("live feed: a message could not be handled")
                continue
            if now - heard > self.silence_limit:
                raise redis.TimeoutError(f"Redis silent for {now - heard:.0f} s")
            if now - pinged >= self.ping_seconds:
                pubsub.ping("antri-hub")  # its pong counts as hearing from Redis
                pinged = now

    def _run(self) -> None:
        backoff = 0.2
        while True:
            client = redis.Redis.from_url(
                self.url,
                socket_connect_timeout=1,
                socket_timeout=5,
                socket_keepalive=True,
            )
            pubsub = client.pubsub()
            try:
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                if self.connected.is_set():
                    backoff = 0.2  # it was working: try again soon
                    log.warning("live feed: lost Redis (%s); ending open streams", exc)
                self.connected.clear()
                self._broadcast(_END)
            except Exception:  # a bug here must not leave the process without a feed
                log.exception("live feed: the hub failed; ending open streams")
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
    publisher = RedisPublisher(url, channel, retry_seconds=app.config["LIVE_RETRY_SECONDS"])
    app.extensions[PUBLISHER] = publisher
    app.extensions[HUB] = Hub(url, channel, on_connect=publisher.redis_is_back)


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
    still_allowed: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """Yield the SSE text of one stream: a ``retry:`` hint, the snapshot, then every
    event for ``point_ids`` (None: every point), with a comment line after each
    ``heartbeat`` seconds of quiet so proxies keep the connection and a gone client is
    noticed. Every ``heartbeat`` seconds, busy or not, ``still_allowed()`` is asked
    whether the caller may still watch (token not revoked, account active); the
    stream ends when it says no. Ends after ``max_seconds`` (the client reconnects)
    or when Redis is lost. Always unregisters ``q``."""
    try:
        yield "retry: 2000\n\n"
        yield sse(json.dumps({"kind": "snapshot", "points": snapshot}), f"snapshot-{time.time()}")
        deadline = time.monotonic() + max_seconds
        next_check = time.monotonic() + heartbeat
        while time.monotonic() < deadline:
            if still_allowed is not None and time.monotonic() >= next_check:
                if not still_allowed():
                    return
                next_check = time.monotonic() + heartbeat
            try:
                item = q.get(timeout=max(0.01, min(heartbeat, next_check - time.monotonic())))
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

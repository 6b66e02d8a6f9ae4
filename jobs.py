"""Background work: the RQ job functions, the relay that feeds them, and the worker.

Every job calls the same services the web app does, inside an app context, and ends
its database session, so one worker process can run any number of them. Jobs are
safe to run twice or at the same time in several workers: each one's effect is
decided by a conditional update in the database (DESIGN.md: the database is the
source of truth; Redis only carries work).

Timed work runs on RQ's own cron scheduler (``rq.cron.CronScheduler``), which enqueues
the relay every JOBS_RELAY_SECONDS and the timed work every JOBS_TIMED_SECONDS. Several
workers each run one: the duplicates find nothing left to do. Times that matter
(a reminder's, a retry's) live in the database as ``notice.due_at``, not in Redis, so
a Redis restart loses none; the relay picks each notice up once it is due.

Without REDIS_URL (``make run``) there is no worker: notices are sent inline after
the request, and ``inline_sweep`` runs the relay and the timed work at most every
INLINE_SWEEP_SECONDS after a request.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from flask import Flask, current_app, has_app_context
from flask.cli import ScriptInfo
from rq import Queue, SimpleWorker
from rq.cron import CronScheduler

from common import transactions
from common.timeutil import utcnow
from extensions import db

log = logging.getLogger("antri.jobs")

# After a failed enqueue, web processes leave Redis alone this long (seconds): the
# relay hands the notices on once it is back.
REDIS_BACKOFF_SECONDS = 5.0
_redis_down_until = 0.0
_connections: dict[tuple[str, float], redis.Redis] = {}
_lock = threading.Lock()


def redis_connection(url: str, timeout: float = 5.0) -> redis.Redis:
    """Return this process's Redis client for ``url`` with socket timeouts of
    ``timeout`` seconds (workers wait for a slow Redis; web processes do not)."""
    with _lock:
        if (url, timeout) not in _connections:
            _connections[(url, timeout)] = redis.Redis.from_url(
                url,
                socket_connect_timeout=min(timeout, 1.0),
                socket_timeout=timeout,
                health_check_interval=30,
            )
        return _connections[(url, timeout)]


# A web process hands notices over after its response, but that still holds a server
# thread: a Redis that accepts connections and never answers may cost it this long.
WEB_REDIS_TIMEOUT = 0.25


def job_queue(timeout: float = 5.0) -> Queue:
    """Return the RQ queue RQ_QUEUE on REDIS_URL (socket timeouts ``timeout`` s).
    Raises RuntimeError without REDIS_URL."""
    url = current_app.config["REDIS_URL"]
    if not url:
        raise RuntimeError("REDIS_URL is not set: jobs run inline")
    return Queue(current_app.config["RQ_QUEUE"], connection=redis_connection(url, timeout))


def _parse_now(now_iso: str | None) -> datetime | None:
    """A job's ``now`` argument: an ISO 8601 instant with offset, or None for the clock.
    Jobs take the instant as an argument so tests (and operators) can run them for a
    chosen moment."""
    if now_iso is None:
        return None
    parsed = datetime.fromisoformat(now_iso)
    if parsed.tzinfo is None:
        raise ValueError("now_iso must carry a UTC offset")
    return parsed


_worker_app: Flask | None = None


def in_app_context(func: Callable) -> Callable:
    """Run a job function inside an app context (the worker's, or one made for a plain
    ``rq worker``) in one transaction (``common.transactions.one_transaction``: commit
    when it returns, roll back when it raises), and end its database session
    afterwards whatever happens.

    Outside an app context (a plain ``rq worker``) the app is loaded the way the
    ``flask`` command loads it (``FLASK_APP``, else ``app.py``), once per process;
    this module never imports the app factory (``app`` imports this module).
    """

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        global _worker_app
        if has_app_context():
            return _run_in_session(func, args, kwargs)
        if _worker_app is None:
            # Found the way ``flask`` finds it (FLASK_APP, else app.py), so this module
            # never imports the app factory, which imports it.
            _worker_app = ScriptInfo().load_app()
        with _worker_app.app_context():
            return _run_in_session(func, args, kwargs)

    return run


def _run_in_session(func: Callable, args: tuple, kwargs: dict) -> Any:
    try:
        return transactions.one_transaction(func)(*args, **kwargs)
    finally:
        db.session.remove()


# Jobs -----------------------------------------------------------------------------


@in_app_context
def deliver_notice(notice_id: int, now_iso: str | None = None) -> str:
    """Job: send one notice (``notify.relay.deliver_notice``). A failure worth a retry
    sets the notice's ``due_at`` to the back-off's end; the relay enqueues it then.
    Returns the outcome's status (sent, retry, failed, void, skipped, superseded)."""
    from notify.relay import deliver_notice as deliver

    return deliver(notice_id, _parse_now(now_iso)).status


@in_app_context
def relay(now_iso: str | None = None) -> int:
    """Job: hand every notice that is due to RQ (``notify.relay.relay_outbox``).
    Returns how many were enqueued."""
    from notify.relay import relay_outbox

    ids = relay_outbox(_parse_now(now_iso))
    transactions.commit()  # the rows say "queued" before a worker may pick them up
    _enqueue(ids, now_iso)
    return len(ids)


@in_app_context
def run_timed_work(now_iso: str | None = None) -> dict[str, int]:
    """Job: the clock's work, each step in its own transaction.

    1. release the places of residents not there NO_SHOW_GRACE_MINUTES into a slot
       others wait for (promotions are notified); then move up the waiting lists a
       sold-out day held once packages came back from another slot (issue 15);
    2. mark no-shows once a slot's window plus CHECKIN_LATE_MINUTES has passed, and
       expire waiting lists of ended slots;
    3. purge personal data RETENTION_DAYS after the slot, and the phone channels'
       numbers and texts RETENTION_DAYS after their use (``channels.retention``);
    4. draw the ballots whose entry window has closed (issue 16), each in its own
       transaction (``ballots.draw.draw_ballot``: safe beside another worker's draw);
       a draw that fails is logged and left for the next run, the others still drawn.
    Returns the counts of each step.
    """
    from ballots import draw as ballots_draw
    from channels.retention import purge_channel_data
    from slots import housekeeping as slots_housekeeping

    # Each step commits on its own (the job's wrapper commits the last): a failing
    # purge does not take back the places already released or the no-shows marked.
    now = _parse_now(now_iso) or utcnow()
    released = slots_housekeeping.release_late_arrivals(now)
    transactions.commit()  # promotions are handed on (notify.relay.hand_on_notices)
    restocked = slots_housekeeping.fill_waiting_lists_with_stock(now)
    transactions.commit()
    no_shows, expired = slots_housekeeping.expire_past_slots(now)
    transactions.commit()
    purged = slots_housekeeping.purge_personal_data(now)
    transactions.commit()
    channel_rows = purge_channel_data(now)
    transactions.commit()
    drawn = 0
    for ballot_id in ballots_draw.due_ballots(now):
        # One ballot's failure (a lock timeout, a fault in its data) must not hold back
        # the others nor, without Redis, the relay the inline sweep runs after this:
        # it rolls back whole (``draw_ballot``) and is tried again at the next run.
        # The freeze commits on its own: its table lock holds back every ballot's
        # entries, so it is held for the freeze alone, not the whole draw.
        try:
            ballots_draw.freeze_ballot(ballot_id, now)
            transactions.commit()
            ballots_draw.draw_ballot(ballot_id, now)
            transactions.commit()
        except Exception:
            transactions.abandon()
            log.exception("ballot %s: the draw failed; it runs again later", ballot_id)
            continue
        drawn += 1
    counts = {
        "released": released,
        "promoted_with_stock": restocked,
        "no_shows": no_shows,
        "waiting_expired": expired,
        "bookings_purged": purged.bookings,
        "channel_rows_purged": channel_rows,
        "residents_purged": purged.residents,
        "ballots_drawn": drawn,
    }
    if any(counts.values()):
        log.info("timed work at %s: %s", now.isoformat(), counts)
    return counts


@in_app_context
def handle_inbound(row_id: int, now_iso: str | None = None) -> int:
    """Job: answer one inbound WhatsApp message taken in by the webhook
    (``channels.whatsapp.handle_stored``); a second run does nothing. Returns how many
    replies it wrote."""
    from channels.whatsapp import handle_stored

    return len(handle_stored(row_id, _parse_now(now_iso) or utcnow()))


def enqueue_inbound(app: Flask, ids: list[int]) -> None:
    """After a webhook's commit: one ``handle_inbound`` job per message, on RQ with
    REDIS_URL, else run here (inline, after the response: ``make run`` and tests).
    When RQ cannot take them (Redis down) they are handled here too: the webhook has
    answered 200, so Meta never sends them again and a message left in its row would
    never be answered (issue 17 §4). Never raises: a message that still fails keeps
    its row (``handled_at`` NULL), logged."""
    try:
        with app.app_context():
            if app.config["REDIS_URL"]:
                try:
                    job_queue(WEB_REDIS_TIMEOUT).enqueue_many(
                        [
                            Queue.prepare_data(handle_inbound, args=(row_id,), result_ttl=0)
                            for row_id in ids
                        ]
                    )
                    return
                except Exception:  # Redis down: answer here rather than never
                    log.warning("inbound messages %s handled inline: RQ unavailable", ids)
            for row_id in ids:
                handle_inbound(row_id)
    except Exception:  # logged: the message waits in its row for an operator's retry
        log.exception("handing inbound messages %s on failed", ids)


# Handing work to RQ -------------------------------------------------------------------


def _enqueue(ids: list[int], now_iso: str | None = None, timeout: float = 5.0) -> None:
    """Enqueue one ``deliver_notice`` job per id, in one round trip."""
    if not ids:
        return
    queue = job_queue(timeout)
    queue.enqueue_many(
        [
            Queue.prepare_data(deliver_notice, args=(notice_id, now_iso), result_ttl=3600)
            for notice_id in ids
        ]
    )


class RelayKick:
    """Ask a worker to relay the outbox now (enqueue the ``relay`` job), at most once per
    ``interval`` seconds per process; a kick inside the interval is carried out when it
    ends, by a timer. A rush of bookings so costs the web tier one job per process per
    interval, not one per notice, and no confirmation waits longer than the interval
    for its hand-over (the worker's own relay runs every JOBS_RELAY_SECONDS besides).

    Never raises: when Redis is down the notices stay pending in the database, further
    kicks wait REDIS_BACKOFF_SECONDS, and the worker's relay sends them once Redis is
    back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0  # time.monotonic() from which the next kick may be sent
        self._timer: threading.Timer | None = None

    def __call__(self, app: Flask) -> None:
        """Kick the relay for ``app`` (its REDIS_URL, RQ_QUEUE, RELAY_KICK_SECONDS)."""
        interval = app.config["RELAY_KICK_SECONDS"]
        with self._lock:
            wait = self._next - time.monotonic()
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._deferred, args=(app,))
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._next = time.monotonic() + interval
        self._send(app)

    def _deferred(self, app: Flask) -> None:
        with self._lock:
            self._timer = None
            self._next = time.monotonic() + app.config["RELAY_KICK_SECONDS"]
        self._send(app)

    def _send(self, app: Flask) -> None:
        global _redis_down_until
        if time.monotonic() < _redis_down_until:
            return
        try:
            with app.app_context():
                job_queue(WEB_REDIS_TIMEOUT).enqueue(relay, result_ttl=60)
        except redis.RedisError as exc:
            _redis_down_until = time.monotonic() + REDIS_BACKOFF_SECONDS
            log.warning("Redis unavailable (%s); notices wait for the worker's relay", exc)
        except Exception:  # a kick is an optimisation: the relay runs on its own anyway
            log.exception("kicking the relay failed; notices wait for the worker's relay")


kick_relay = RelayKick()


# Inline mode ------------------------------------------------------------------------

_last_sweep = 0.0
_sweeping = threading.Lock()


def inline_sweep() -> None:
    """Without Redis: run the relay (sending inline) and the timed work, at most once per
    INLINE_SWEEP_SECONDS per process; called after a response has gone out."""
    global _last_sweep
    interval = current_app.config["INLINE_SWEEP_SECONDS"]
    if not interval or time.monotonic() - _last_sweep < interval:
        return
    if not _sweeping.acquire(blocking=False):
        return
    try:
        _last_sweep = time.monotonic()
        from notify.relay import deliver_pending

        run_timed_work()
        _run_in_session(deliver_pending, (), {})
    except Exception:
        log.exception("inline sweep failed; it runs again later")
    finally:
        _sweeping.release()


def init_app(app: Flask) -> None:
    """Register the inline sweep after each request when REDIS_URL is not set (new
    notices are handed on by ``notify.relay.hand_on_notices``, registered with the
    relay kick in ``create_app``)."""

    @app.after_request
    def _sweep_after(response):
        interval = app.config["INLINE_SWEEP_SECONDS"]
        if not app.config["REDIS_URL"] and interval and time.monotonic() - _last_sweep >= interval:

            def sweep() -> None:
                with app.app_context():
                    inline_sweep()

            response.call_on_close(sweep)
        return response


# The worker -------------------------------------------------------------------------


def _cron(connection: redis.Redis, queue_name: str) -> CronScheduler:
    """RQ's cron scheduler with Antri's periodic jobs registered."""
    config = current_app.config
    cron = CronScheduler(connection=connection)
    cron.register(relay, queue_name, interval=config["JOBS_RELAY_SECONDS"], result_ttl=600)
    cron.register(run_timed_work, queue_name, interval=config["JOBS_TIMED_SECONDS"], result_ttl=600)
    return cron


def run_worker(burst: bool = False) -> None:
    """Run one RQ worker on RQ_QUEUE with RQ's cron scheduler, in the current app
    context, as one process (jobs run in it, no fork, no scheduler child: a worker
    killed with SIGKILL leaves nothing behind).

    With ``burst``: enqueue the relay and the timed work once, work until the queue is
    empty, then return. Without: also enqueue them on their intervals from a thread,
    and reconnect after Redis goes away, until stopped (SIGTERM/SIGINT: RQ finishes
    the job at hand first).
    Raises: RuntimeError without REDIS_URL.
    """
    queue = job_queue()
    connection = queue.connection
    cron = _cron(connection, queue.name)
    worker = SimpleWorker([queue], connection=connection)
    if burst:
        cron.enqueue_jobs()
        worker.work(burst=True, logging_level="WARNING")
        return
    stop = threading.Event()
    thread = threading.Thread(target=_cron_loop, args=(cron, stop), daemon=True)
    thread.start()
    try:
        while True:
            try:
                worker.work(logging_level="INFO")
                return
            except redis.ConnectionError as exc:
                log.warning("Redis unavailable (%s); the worker retries in 5 s", exc)
                time.sleep(5)
                worker = SimpleWorker([queue], connection=connection)
    finally:
        stop.set()


def _cron_loop(cron: CronScheduler, stop: threading.Event) -> None:
    """Enqueue the periodic jobs when due until ``stop`` is set; survive Redis outages."""
    while not stop.is_set():
        try:
            cron.enqueue_jobs()
            pause = cron.calculate_sleep_interval()
        except redis.RedisError as exc:
            log.warning("cron: Redis unavailable (%s)", exc)
            pause = 5
        stop.wait(max(pause, 0.5))

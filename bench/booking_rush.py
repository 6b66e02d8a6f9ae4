"""Booking rush benchmark: gunicorn + a real database, clients in separate processes.

Starts Antri under gunicorn on PostgreSQL (database ``antri_bench`` at 127.0.0.1, made
if missing) or on SQLite (``--sqlite``), with notices going to an RQ queue in Redis as
deployed (``--redis-url``; no worker runs during the measurement), seeds the Jakarta
market points with slots, warms every worker up, then drives ``--clients`` concurrent
clients (spread over several processes, each client one keep-alive connection) that
book with distinct NIKs back to back: most across many slots, a share (``--hot``) into
one hot slot, in ``--rounds`` rounds that alternate with the same clients on
``/healthz``. It prints bookings per second, p50/p99 latency, errors and oversold
places, and each round's ratio; then it offers bookings at a steady ``--rate`` below
saturation and prints that latency.

The last line reads ``ratio=<booking throughput / trivial throughput> oversold=<n>``,
the ratio being the median of the rounds'.

With ``--stock`` every point-day the clients book on has a stock setting (issue 15),
with packages enough that none sells out: each booking also reserves its package in
the same transaction. Compare its figures with a run without (issue 15's target: within
10%); the stock books are checked after the run (``stock mismatches``).

    .venv/bin/python bench/booking_rush.py --quick          # < 1 minute
    .venv/bin/python bench/booking_rush.py --quick --stock  # the same with stock set
    .venv/bin/python bench/booking_rush.py --sqlite --seconds 30
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import gunicorn  # noqa: E402  (after the path is set)

VENV_BIN = Path(sys.executable).parent
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/antri_bench")
# As deployed: notices go to an RQ queue in Redis. No worker runs during the run (in
# production workers have their own hosts); the queue is counted and emptied after.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RQ_QUEUE = "antri-bench"


def make_nik(n: int) -> str:
    """A valid, distinct NIK for every n < 28*12*50*9999 = 167,983,200 (Kec. Senen,
    varied birth dates)."""
    serial, rest = n % 9999 + 1, n // 9999
    day, rest = rest % 28 + 1, rest // 28
    month, rest = rest % 12 + 1, rest // 12
    year = 50 + rest % 50
    return f"317104{day:02d}{month:02d}{year:02d}{serial:04d}"


def prepare_database(sqlite: bool, instance: Path, redis_url: str) -> dict[str, str]:
    """Create an empty database, migrate it, seed it; empty the bench's Redis queue;
    return the app's environment."""
    env = {
        "ANTRI_INSTANCE_PATH": str(instance),
        "SECRET_KEY": "bench-secret",
        "NIK_HASH_KEY": "bench-nik-key",
        "RATELIMIT_ENABLED": "false",
        "REDIS_URL": redis_url,
        "RQ_QUEUE": RQ_QUEUE,
        "FLASK_APP": "app",
    }
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
    if sqlite:
        env["DATABASE_URL"] = f"sqlite:///{instance / 'bench.db'}"
    else:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            # The database BENCH_PG_URL names (several runs at once each use their own).
            name = PG_URL.rsplit("/", 1)[1]
            if not name.replace("_", "").isalnum():
                raise SystemExit(f"BENCH_PG_URL names an odd database: {name!r}")
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        env["DATABASE_URL"] = PG_URL
    full_env = {**os.environ, **env}
    for args in (["db", "upgrade"], ["seed-demo", "--days", "7"]):
        subprocess.run(
            [str(VENV_BIN / "flask"), *args], cwd=REPO, env=full_env, check=True,
            capture_output=True,
        )  # fmt: skip
    if not sqlite:
        import psycopg

        # As a database in service: planner statistics for the freshly seeded tables,
        # and no checkpoint of the seeding's writes falling inside the measurement.
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
    return env


def analyze(env: dict[str, str]) -> None:
    """ANALYZE the database, as autovacuum does in service once a table has grown.

    Run after the warm-up: the warm-up's first rows (residents, bookings, entries) take
    the tables from empty to a thousand rows. A statement's cached plan that was made
    while ``resident`` was a page or two scans it whole on every later execution, and
    so slows down as the rush fills it; ANALYZE invalidates such plans. PostgreSQL's
    autovacuum analyzes a table after 50 rows plus 10 % have changed, a minute at most
    apart; it is off on the machines this benchmark runs on, so it is done here.
    No-op on SQLite.
    """
    url = env.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def set_stock_everywhere(env: dict[str, str]) -> int:
    """Set stock on every market point for the local dates from yesterday to 8 days on
    (the days the clients book on), with STOCK_PACKAGES each, one per booking; return
    how many point-days got one. Through ``slots.stock.set_stock``, as an admin would."""
    os.environ.update(env)
    from datetime import timedelta

    from sqlalchemy import select

    from app import create_app
    from common.audit import CLI
    from common.timeutil import local_date, utcnow
    from extensions import db
    from slots.models import MarketPoint
    from slots.stock import set_stock

    app = create_app()
    made = 0
    with app.app_context():
        for point in db.session.scalars(select(MarketPoint)).all():
            today = local_date(utcnow(), point.timezone)
            for offset in range(-1, 9):
                set_stock(point.code, today + timedelta(days=offset), STOCK_PACKAGES, 1, CLI)
                made += 1
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # Planner statistics for the new rows, as prepare_database gives the rest.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE stock")
        db.engine.dispose()
    return made


# Packages per point-day with ``--stock``: more than the clients can book in a run.
STOCK_PACKAGES = 1_000_000


def slot_ids(base: str) -> tuple[list[int], int]:
    """Return (bookable slot ids of every point for the coming days, the hot slot id)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/api/v1/market-points")
    points = json.loads(conn.getresponse().read())
    ids: list[int] = []
    from datetime import date, timedelta

    today = date.today()
    for point in points[:12]:
        for offset in range(1, 7):
            conn.request(
                "GET",
                f"/api/v1/market-points/{point['code']}/slots"
                f"?date={today + timedelta(days=offset)}",
            )
            ids += [s["id"] for s in json.loads(conn.getresponse().read())]
    conn.close()
    return ids[1:], ids[0]


def client_process(
    base, slot_list, hot, hot_share, clients, start_n, start, deadline, path, out, interval=0.0
):
    """Run ``clients`` threads, each a keep-alive connection sending requests from
    ``start`` until ``deadline`` (epoch seconds), back to back or (``interval`` > 0) one
    every ``interval`` seconds; put [(status, seconds), ...] on ``out``."""
    import threading

    host, port = base.removeprefix("http://").split(":")
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        rng = random.Random(start_n + index)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        n = start_n + index * 100_000  # a client sends far fewer than 100,000
        mine = []
        time.sleep(max(0.0, start - time.time()))
        # Paced clients start spread over one interval, not all at once.
        next_send = start + rng.random() * interval
        while time.time() < deadline:
            if interval:
                time.sleep(max(0.0, next_send - time.time()))
                next_send += interval
            began = time.perf_counter()
            try:
                if path == "/healthz":
                    conn.request("GET", "/healthz")
                else:
                    slot = hot if rng.random() < hot_share else rng.choice(slot_list)
                    body = json.dumps({
                        "slot_id": slot, "name": "Warga Bench", "nik": make_nik(n),
                        "phone": "081234567890",
                    })  # fmt: skip
                    n += 1
                    conn.request("POST", "/api/v1/bookings", body,
                                 {"Content-Type": "application/json"})  # fmt: skip
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
            mine.append((status, time.perf_counter() - began))
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(results)


def drive(
    base, path, seconds, clients, processes, slot_list=(), hot=0, hot_share=0.0, seed=0, rate=0.0
):
    """Run the load for ``seconds``: clients back to back, or together offering ``rate``
    requests per second (open loop); return (results, elapsed seconds)."""
    out: mp.Queue = mp.Queue()
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    start = time.time() + 1.0  # let every process start before the clock runs
    deadline = start + seconds
    procs = [
        mp.Process(
            target=client_process,
            args=(
                base,
                list(slot_list),
                hot,
                hot_share,
                per[i],
                seed + i * 2_000_000,  # up to 20 clients a process
                start,
                deadline,
                path,
                out,
                clients / rate if rate else 0.0,
            ),
        )  # fmt: skip
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    results = []
    for _ in procs:
        results += out.get()
    for proc in procs:
        proc.join()
    return results, seconds


def summarise(name: str, results, seconds) -> float:
    """Print throughput, latency percentiles and status counts; return requests/s."""
    latencies = sorted(r[1] for r in results)
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    rate = len(results) / seconds
    p50 = statistics.median(latencies) * 1000 if latencies else 0
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else 0
    print(
        f"{name}: {len(results)} requests in {seconds:.0f} s = {rate:.0f}/s, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, statuses {dict(sorted(statuses.items()))}"
    )
    return rate


def oversold(env: dict[str, str]) -> tuple[int, int, int, int]:
    """Count places sold beyond capacity, slots whose counter disagrees with rows,
    confirmations written (the outbox: one per booking, sent by the workers), and
    stock rows whose ``reserved`` is not the sum of their day's active bookings'
    packages (issue 15; 0 without ``--stock``)."""
    os.environ.update(env)
    from sqlalchemy import func, select

    from app import create_app
    from extensions import db
    from slots.models import ACTIVE_STATUSES, Booking, Notice, Slot, Stock
    from slots.stock import slot_day

    app = create_app()
    with app.app_context():
        rows = db.session.execute(
            select(Slot.capacity, Slot.booked_count, func.count(Booking.id))
            .outerjoin(Booking, (Booking.slot_id == Slot.id) & Booking.status.in_(ACTIVE_STATUSES))
            .group_by(Slot.id)
        ).all()
        confirmations = db.session.scalar(
            select(func.count(Notice.id)).where(Notice.kind == "confirmation")
        )
        held: dict[tuple[int, object], int] = {}
        for booking in db.session.scalars(
            select(Booking).where(Booking.status.in_(ACTIVE_STATUSES), Booking.packages > 0)
        ):
            key = (booking.slot.market_point_id, slot_day(booking.slot))
            held[key] = held.get(key, 0) + booking.packages
        stock_off = sum(
            1
            for row in db.session.scalars(select(Stock))
            if row.reserved != held.get((row.market_point_id, row.day), 0)
        )
        db.engine.dispose()
    over = sum(max(0, active - capacity) for capacity, _, active in rows)
    mismatched = sum(1 for _, counter, active in rows if counter != active)
    return over, mismatched, confirmations, stock_off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--quick", action="store_true", help="12 s of bookings (< 1 minute)")
    parser.add_argument("--seconds", type=int, default=30, help="seconds of bookings in all")
    parser.add_argument("--rounds", type=int, default=3, help="booking/healthz rounds")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--processes", type=int, default=5, help="client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--hot", type=float, default=0.2, help="share of requests to one slot")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds first")
    parser.add_argument(
        "--stock", action="store_true",
        help="set stock (enough packages) on every point-day booked on (issue 15)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=float, default=250.0,
        help="bookings per second the clients offer in the paced phase (0: no such phase)",
    )  # fmt: skip
    parser.add_argument(
        "--redis-url", default=REDIS_URL,
        help="Redis for the notice queue (its database is emptied); '' sends notices inline",
    )  # fmt: skip
    args = parser.parse_args()
    seconds = 12 if args.quick else args.seconds

    with tempfile.TemporaryDirectory(prefix="antri-bench-") as tmp:
        instance = Path(tmp)
        env = prepare_database(args.sqlite, instance, args.redis_url)
        stocked = set_stock_everywhere(env) if args.stock else 0
        db_name = "SQLite" if args.sqlite else "PostgreSQL"
        print(
            f"database {db_name}; gunicorn {args.workers} workers x {args.threads} threads; "
            f"{args.clients} clients in {args.processes} processes; {os.cpu_count()} cores; "
            f"stock {'set on ' + str(stocked) + ' point-days' if args.stock else 'not set'}"
        )
        with gunicorn(env, workers=args.workers, threads=args.threads) as base:
            slots, hot = slot_ids(base)
            # Warm-up, not measured: every worker loads its lazy state (the kecamatan
            # list, phone metadata, signing key, compiled statements) before the clock
            # runs. Spread over the slots; the hot slot stays empty for the rush.
            drive(base, "/api/v1/bookings", args.warmup, args.clients, args.processes,
                  slots, seed=50_000_000)  # fmt: skip
            analyze(env)
            # Bookings and /healthz alternate in rounds, and the ratio is the median of
            # the rounds' ratios: this machine's speed drifts by a third within a
            # minute, and pairs measured close together cancel most of the drift.
            results, trivial, ratios = [], [], []
            booking_seconds = max(2, seconds // args.rounds)
            trivial_seconds = max(2, booking_seconds * 3 // 4)
            for round_ in range(args.rounds):
                booked, elapsed = drive(
                    base, "/api/v1/bookings", booking_seconds, args.clients, args.processes,
                    slots, hot, args.hot, seed=round_ * 10_000_000,
                )  # fmt: skip
                booking_rate = summarise(f"round {round_ + 1} bookings", booked, elapsed)
                answered, elapsed = drive(
                    base, "/healthz", trivial_seconds, args.clients, args.processes
                )
                trivial_rate = summarise(f"round {round_ + 1} healthz ", answered, elapsed)
                results += booked
                trivial += answered
                ratios.append(booking_rate / trivial_rate)
            summarise("bookings", results, booking_seconds * args.rounds)
            summarise("healthz", trivial, trivial_seconds * args.rounds)
            confirmed = sum(1 for status, _ in results if status == 201)
            refused = sum(1 for status, _ in results if status == 409)
            errors = len(results) - confirmed - refused
            if args.rate:
                # A rush below saturation: the same clients, each sending at a steady
                # pace, so latency is the server's, not the length of a queue.
                paced, elapsed = drive(
                    base, "/api/v1/bookings", booking_seconds, args.clients, args.processes,
                    slots, hot, args.hot, seed=40_000_000, rate=args.rate,
                )  # fmt: skip
                summarise(f"bookings paced at {args.rate:.0f}/s offered", paced, elapsed)
        over, mismatched, confirmations, stock_off = oversold(env)
        kicks = "none (no Redis: sent inline)"
        if args.redis_url:
            import redis

            connection = redis.Redis.from_url(args.redis_url)
            kicks = connection.llen(f"rq:queue:{RQ_QUEUE}")
            connection.flushdb()
        print(
            f"confirmed {confirmed}, refused (slot_full/limit) {refused}, errors {errors}, "
            f"counter mismatches {mismatched}, stock mismatches {stock_off}, "
            f"slots {len(slots) + 1}"
        )
        print(
            f"confirmations in the outbox {confirmations} (warm-up included), "
            f"relay jobs queued {kicks}"
        )
        print("ratios of the rounds: " + ", ".join(f"{r:.2f}" for r in ratios))
        print(f"ratio={statistics.median(ratios):.2f} oversold={over}")


if __name__ == "__main__":
    main()

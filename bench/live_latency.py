"""Live feed latency: from a scan's request to the event at every open stream.

Starts Antri under gunicorn's threaded worker (``gthread``; each open stream holds one
thread) on PostgreSQL (database ``antri_bench_live`` at 127.0.0.1, dropped and made
again) with Redis, seeds ``--points`` market points (150) with a slot running now and
enough confirmed bookings, connects ``--clients`` Server-Sent Events clients (50, raw
keep-alive sockets in separate processes) to ``GET /api/v1/occupancy/stream`` as
supervisors, then drives a steady stream of scans through ``POST /api/v1/checkin``.
Each client notes when each check-in event arrives; the delay is measured from just
before the scan request was sent (CLOCK_MONOTONIC, shared by the processes).

Prints the scan rate, events delivered per second, the p50 / p95 / max delay and
lost events; the last line reads ``p95_ms=<n> clients=<n> points=<n>``.

    .venv/bin/python bench/live_latency.py --quick      # < 1 minute
    .venv/bin/python bench/live_latency.py --seconds 60 --rate 30
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import gunicorn  # noqa: E402  (after the path is set)

VENV_BIN = Path(sys.executable).parent
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "antri_bench_live"
PG_URL = os.environ.get("BENCH_PG_URL", f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


def prepare(instance: Path, points: int, bookings_per_point: int) -> tuple[dict, str, dict]:
    """Make the database, seed points, slots, bookings and a supervisor token.

    Returns: (the app's environment, the bearer token, {booking id: (code, point code)}).
    """
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    env = {
        "ANTRI_INSTANCE_PATH": str(instance),
        "SECRET_KEY": "bench-secret",
        "NIK_HASH_KEY": "bench-nik-key",
        "RATELIMIT_ENABLED": "false",
        "DATABASE_URL": PG_URL,
        "REDIS_URL": REDIS_URL,
        # Pub/sub channels ignore the Redis database number: one of our own.
        "LIVE_CHANNEL": f"antri-bench:{uuid.uuid4().hex}",
        "FLASK_APP": "app",
    }
    subprocess.run(
        [str(VENV_BIN / "flask"), "db", "upgrade"], cwd=REPO, env={**os.environ, **env},
        check=True, capture_output=True,
    )  # fmt: skip
    os.environ.update(env)
    from accounts.service import create_user, issue_token
    from app import create_app
    from common.timeutil import utcnow
    from extensions import db
    from slots.codes import new_booking_code
    from slots.models import CONFIRMED, Booking, MarketPoint, Resident, Slot

    app = create_app()
    tickets: dict[int, tuple[str, str]] = {}
    with app.app_context():
        now = utcnow().replace(second=0, microsecond=0)
        rows = [
            MarketPoint(
                code=f"BENCH-{n:03d}",
                name=f"Pasar Bench {n}",
                kecamatan="Senen",
                kecamatan_code="317104",
                city="Jakarta Pusat" if n % 2 else "Jakarta Timur",
                safe_limit=10_000,  # the bench measures the feed, not the safe limit
                timezone="Asia/Jakarta",
            )
            for n in range(1, points + 1)
        ]
        db.session.add_all(rows)
        db.session.flush()
        slots = [
            Slot(
                market_point_id=p.id,
                starts_at=now - timedelta(minutes=10),
                ends_at=now + timedelta(minutes=50),
                capacity=bookings_per_point,
                booked_count=bookings_per_point,
                published_at=now - timedelta(days=1),
            )
            for p in rows
        ]
        db.session.add_all(slots)
        db.session.flush()
        residents = [
            Resident(nik_hash=secrets.token_hex(32), nik_last4=f"{n % 10000:04d}")
            for n in range(bookings_per_point)
        ]
        db.session.add_all(residents)
        db.session.flush()
        bookings = []
        for slot in slots:
            for resident in residents:
                bookings.append(
                    Booking(
                        code=new_booking_code(),
                        slot_id=slot.id,
                        resident_id=resident.id,
                        name="Warga Bench",
                        nik_last4=resident.nik_last4,
                        phone="+6281234567890",
                        status=CONFIRMED,
                        created_at=now,
                    )
                )
        db.session.add_all(bookings)
        db.session.flush()
        codes = {p.id: p.code for p in rows}
        slot_point = {s.id: s.market_point_id for s in slots}
        tickets = {b.id: (b.code, codes[slot_point[b.slot_id]]) for b in bookings}
        user = create_user("bench-boss@antri.local", "supervisor", "bench-password-1")
        token = issue_token(user, "bench")
        db.session.commit()
        db.engine.dispose()
    return env, token, tickets


def stream_clients(base, token, count, ready, stop, out) -> None:
    """Run ``count`` SSE clients as threads of this process; each reads events until
    the first event after ``stop`` (an mp.Event) is set. Puts one list per client of
    [(booking id, arrival monotonic), ...] on ``out``."""
    host, port = base.removeprefix("http://").split(":")

    def run(results: list) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(
            "GET", "/api/v1/occupancy/stream",
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        )  # fmt: skip
        response = conn.getresponse()
        assert response.status == 200, response.status
        data: list[str] = []
        connected = False
        while True:
            line = response.fp.readline()
            if not line:
                break
            text = line.decode().rstrip("\r\n")
            if text.startswith("data: "):
                data.append(text[6:])
            elif text == "" and data:
                event = json.loads("\n".join(data))
                data = []
                if event.get("kind") == "snapshot" and not connected:
                    connected = True
                    ready.put(1)
                elif event.get("kind") == "check_in":
                    results.append((event["booking_id"], time.monotonic()))
                if stop.is_set():
                    break
        conn.close()

    per_client = [[] for _ in range(count)]
    threads = [threading.Thread(target=run, args=(per_client[i],)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(per_client)


def drive_scans(base, token, tickets, rate, seconds, scanners=4) -> tuple[dict, list]:
    """Scan ``rate`` tickets per second for ``seconds`` from ``scanners`` threads.

    Returns: ({booking id: send time (monotonic)}, [scan request seconds]).
    """
    host, port = base.removeprefix("http://").split(":")
    sent: dict[int, float] = {}
    took: list[float] = []
    order = list(tickets.items())
    # Spread scans over the points, as gates at many points would.
    order.sort(key=lambda item: (item[0] % 997, item[0]))
    lock = threading.Lock()
    start = time.monotonic()
    total = int(rate * seconds)

    def run(index: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        for k in range(index, min(total, len(order)), scanners):
            due = start + k / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            booking_id, (code, point) = order[k]
            body = json.dumps({"code": code, "market_point": point, "device": "bench"})
            began = time.monotonic()
            conn.request(
                "POST", "/api/v1/checkin", body,
                {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )  # fmt: skip
            answer = conn.getresponse()
            payload = json.loads(answer.read())
            with lock:
                took.append(time.monotonic() - began)
                if answer.status == 200 and payload.get("result") == "admitted":
                    sent[booking_id] = began
        conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(scanners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent, took


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0..1) of ``values`` by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(share * len(ordered))) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 15 s run (< 1 minute)")
    parser.add_argument("--seconds", type=int, default=45, help="length of the scan stream")
    parser.add_argument("--rate", type=float, default=20.0, help="scans per second")
    parser.add_argument("--clients", type=int, default=50, help="open stream clients")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--points", type=int, default=150, help="market points")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=40, help="threads per worker")
    args = parser.parse_args()
    seconds = 15 if args.quick else args.seconds
    per_point = max(2, int(args.rate * seconds / args.points) + 2)

    with tempfile.TemporaryDirectory(prefix="antri-bench-live-") as tmp:
        env, token, tickets = prepare(Path(tmp), args.points, per_point)
        # The clients share one supervisor's token and stand for many screens: lift
        # the cap per account, and cap streams per process below the thread count
        # (README, "Live feed": threads must exceed LIVE_MAX_STREAMS_PER_PROCESS).
        env["LIVE_MAX_STREAMS_PER_USER"] = str(args.clients)
        env["LIVE_MAX_STREAMS_PER_PROCESS"] = str(max(1, args.threads - 4))
        print(
            f"PostgreSQL + Redis; gunicorn gthread {args.workers} workers x {args.threads} "
            f"threads; {args.points} points, {len(tickets)} bookings; {args.clients} stream "
            f"clients in {args.processes} processes; {args.rate:g} scans/s for {seconds} s; "
            f"{os.cpu_count()} cores"
        )
        with gunicorn(env, workers=args.workers, threads=args.threads) as base:
            ready: mp.Queue = mp.Queue()
            out: mp.Queue = mp.Queue()
            stop = mp.Event()
            per = [
                args.clients // args.processes + (1 if i < args.clients % args.processes else 0)
                for i in range(args.processes)
            ]
            procs = [
                mp.Process(target=stream_clients, args=(base, token, n, ready, stop, out))
                for n in per
            ]
            began = time.monotonic()
            for proc in procs:
                proc.start()
            for _ in range(args.clients):
                ready.get(timeout=60)
            print(f"{args.clients} streams open in {time.monotonic() - began:.1f} s")
            sentinel = tickets.pop(max(tickets))
            sent, took = drive_scans(base, token, tickets, args.rate, seconds)
            time.sleep(2)  # the last events' way to the clients
            stop.set()
            # One more scan: every client reads its event, sees the stop and reports.
            drive_scans(base, token, {0: sentinel}, 1.0, 1, scanners=1)
            received: list[list[tuple[int, float]]] = []
            for _ in procs:
                received += out.get(timeout=60)
            for proc in procs:
                proc.join(timeout=10)
        delays: list[float] = []
        lost = 0
        for client_events in received:
            got = {booking_id: at for booking_id, at in client_events}
            for booking_id, at in sent.items():
                if booking_id in got:
                    delays.append(got[booking_id] - at)
                else:
                    lost += 1
        print(
            f"scans: {len(took)} sent, {len(sent)} admitted, {len(took) / seconds:.1f}/s, "
            f"request p50 {statistics.median(took) * 1000:.0f} ms, "
            f"p95 {percentile(took, 0.95) * 1000:.0f} ms"
        )
        if not delays:
            print("no events measured")
            print(f"p95_ms=nan clients={args.clients} points={args.points}")
            return
        print(
            f"events delivered: {len(delays)} ({len(delays) / seconds:.0f}/s to "
            f"{len(received)} clients), lost {lost}"
        )
        print(
            f"scan to event: p50 {percentile(delays, 0.5) * 1000:.0f} ms, "
            f"p95 {percentile(delays, 0.95) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
        )
        print(
            f"p95_ms={percentile(delays, 0.95) * 1000:.0f} clients={args.clients} "
            f"points={args.points}"
        )


if __name__ == "__main__":
    main()

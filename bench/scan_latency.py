"""Scan latency benchmark: 20 scanner clients against gunicorn on PostgreSQL.

Creates (or resets) the database ``antri_bench_scan`` at 127.0.0.1, migrates it, and
seeds one market point with a slot running now holding ``--tickets`` confirmed
bookings (written straight to the database: this measures scanning, not booking).
Then ``--clients`` scanner clients, spread over ``--processes`` processes, each one
keep-alive connection with its own device label and nonces, post real signed tickets
to ``POST /api/v1/checkin`` until every ticket is used; a tenth of the scans repeat an
admitted ticket (the ``already_checked_in`` path). It prints p50/p99 latency and
scans per second; the last line reads ``p99_ms=<n> scans_per_s=<n>``.

    .venv/bin/python bench/scan_latency.py --quick             # saturation, < 1 minute
    .venv/bin/python bench/scan_latency.py --quick --pace 1    # gate pace, < 1 minute
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
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import gunicorn  # noqa: E402  (after the path is set)

VENV_BIN = Path(sys.executable).parent
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "antri_bench_scan"
PG_URL = os.environ.get("BENCH_SCAN_PG_URL", f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}")


def prepare(instance: Path, tickets: int) -> tuple[dict[str, str], list[str], str]:
    """Reset the database, migrate, seed a point, a running slot, bookings and a staff
    token. Returns (the app's environment, the tickets, the bearer token)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    env = {
        "ANTRI_INSTANCE_PATH": str(instance),
        "DATABASE_URL": PG_URL,
        "SECRET_KEY": "bench-secret",
        "NIK_HASH_KEY": "bench-nik-key",
        "RATELIMIT_ENABLED": "false",
        "REDIS_URL": "",
        "INLINE_SWEEP_SECONDS": "0",
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
    from qr.service import issue_ticket
    from slots.models import Booking, MarketPoint, Slot

    app = create_app()
    with app.app_context():
        point = MarketPoint(code="BENCH-1", name="Pasar Bench", safe_limit=tickets * 2)
        now = utcnow().replace(second=0, microsecond=0)
        slot = Slot(
            market_point=point,
            starts_at=now - timedelta(minutes=10),
            ends_at=now + timedelta(minutes=50),
            capacity=tickets,
            booked_count=tickets,
            published_at=now - timedelta(days=1),
        )
        db.session.add_all([point, slot])
        db.session.flush()
        rng = random.Random(7)
        alphabet = "ACDEFGHJKMNPQRTUVWXY34679"
        codes = {"".join(rng.choice(alphabet) for _ in range(8)) for _ in range(tickets * 2)}
        bookings = [
            Booking(
                code=code,
                slot_id=slot.id,
                name="Warga Bench",
                nik_last4="0001",
                phone="+6281234567890",
                status="confirmed",
            )  # fmt: skip
            for code in list(codes)[:tickets]
        ]
        db.session.add_all(bookings)
        user = create_user("bench-gate@antri.test", "staff", "bench-pass-1", point)
        token = issue_token(user, "bench")
        db.session.flush()
        texts = [issue_ticket(b) for b in bookings]
        db.session.commit()
        db.engine.dispose()
    return env, texts, token


def client_process(base, tickets, token, clients, first, out, pace=0.0):
    """Run ``clients`` threads, each one keep-alive connection scanning its share of
    ``tickets``, one scan every ``pace`` seconds at most (0: back to back); put
    [(status, seconds, result), ...] on ``out``."""
    import threading

    host, port = base.removeprefix("http://").split(":")
    results: list[tuple[int, float, str]] = []
    lock = threading.Lock()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def run(index: int) -> None:
        rng = random.Random(first + index)
        mine = tickets[index::clients]
        done: list[str] = []
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        answers = []
        for n, ticket in enumerate(mine):
            scans = [ticket]
            if done and rng.random() < 0.1:
                scans.append(rng.choice(done))  # a repeat: already_checked_in
            for text in scans:
                body = json.dumps({"ticket": text, "device": f"bench-{first + index}",
                                   "nonce": f"{first + index}-{n}-{len(answers)}"})  # fmt: skip
                began = time.perf_counter()
                if pace:
                    # A scanner at a gate: the next person steps up a moment later.
                    time.sleep(rng.uniform(0.5, 1.5) * pace)
                    began = time.perf_counter()
                try:
                    conn.request("POST", "/api/v1/checkin", body, headers)
                    response = conn.getresponse()
                    payload = json.loads(response.read())
                    status, result = response.status, payload.get("reason") or payload["result"]
                except (OSError, http.client.HTTPException, ValueError, KeyError):
                    status, result = 0, "error"
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=30)
                answers.append((status, time.perf_counter() - began, result))
            done.append(ticket)
        conn.close()
        with lock:
            results.extend(answers)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="2,000 tickets, 600 with --pace (< 1 minute)"
    )
    parser.add_argument("--tickets", type=int, default=8000, help="confirmed bookings to scan")
    parser.add_argument("--clients", type=int, default=20, help="concurrent scanner clients")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="seconds between one client's scans, on average (0: back to back, the "
        "server's saturation; a gate scanner does about one scan a second)",
    )
    args = parser.parse_args()
    count = (600 if args.pace else 2000) if args.quick else args.tickets

    with tempfile.TemporaryDirectory(prefix="antri-bench-scan-") as tmp:
        env, tickets, token = prepare(Path(tmp), count)
        print(
            f"database PostgreSQL; gunicorn {args.workers} workers x {args.threads} threads; "
            f"{args.clients} scanner clients in {args.processes} processes; "
            f"{len(tickets)} tickets; {os.cpu_count()} cores; "
            + (f"each client scans every {args.pace:g} s on average" if args.pace else
               "clients scan back to back (saturation)")
        )  # fmt: skip
        with gunicorn(env, workers=args.workers, threads=args.threads) as base:
            per = [args.clients // args.processes + (i < args.clients % args.processes)
                   for i in range(args.processes)]  # fmt: skip
            out: mp.Queue = mp.Queue()
            procs, offset = [], 0
            for i, n in enumerate(per):
                share = tickets[offset * len(tickets) // args.clients:
                                (offset + n) * len(tickets) // args.clients]  # fmt: skip
                offset += n
                procs.append(mp.Process(target=client_process,
                                        args=(base, share, token, n, i * 1000, out,
                                              args.pace)))  # fmt: skip
            began = time.perf_counter()
            for proc in procs:
                proc.start()
            results = []
            for _ in procs:
                results += out.get()
            elapsed = time.perf_counter() - began
            for proc in procs:
                proc.join()
    latencies = sorted(r[1] for r in results)
    outcomes: dict[str, int] = {}
    for _, _, result in results:
        outcomes[result] = outcomes.get(result, 0) + 1
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000
    rate = len(results) / elapsed
    print(f"scans {len(results)} in {elapsed:.1f} s; outcomes {dict(sorted(outcomes.items()))}")
    print(f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    print(f"p99_ms={p99:.1f} scans_per_s={rate:.0f}")


if __name__ == "__main__":
    main()

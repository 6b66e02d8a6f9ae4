"""Ballot entry rush benchmark (issue 16 §2): entries/s against /healthz on one server.

The server setup is ``bench/booking_rush.py``'s (gunicorn on PostgreSQL, database
``antri_bench_ballot`` unless BENCH_PG_URL says otherwise, or ``--sqlite``; the
Jakarta market points seeded with slots; messages to an RQ queue in Redis, no worker
running). A ballot is opened over one point's slots two days ahead, its window open for
the run. Then ``--clients`` keep-alive clients in ``--processes`` processes enter it
back to back with distinct NIKs (one to three preferred slots each), in ``--rounds``
rounds that alternate with the same clients on ``/healthz``.

Printed: entries/s, /healthz/s, each round's ratio and the median ``ratio`` (target
>= 0.6, issue 16 §2); ``lost`` (201 answers without a row, or rows without a 201) and
``doubled`` (a NIK with two entries): both must be 0.

    .venv/bin/python bench/ballot_entry.py --quick      # < 1 minute
    .venv/bin/python bench/ballot_entry.py --sqlite --seconds 30
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/antri_bench_ballot")

from bench import booking_rush as rush  # noqa: E402  (after the path is set)
from tests.servers import gunicorn  # noqa: E402

POINT = "JKT-001"


def open_ballot(env: dict[str, str]) -> tuple[int, list[int]]:
    """Open a ballot over POINT's slots two days ahead, open from now for two hours,
    as an admin would (``ballots.rounds.create_ballot``); return (id, its slot ids)."""
    os.environ.update(env)
    from datetime import timedelta

    from app import create_app
    from ballots.rounds import ballot_slots, create_ballot
    from common.timeutil import local_date, utcnow
    from extensions import db

    app = create_app()
    with app.app_context():
        now = utcnow()
        from slots.points import get_point

        day = local_date(now, get_point(POINT).timezone) + timedelta(days=2)
        ballot = create_ballot(POINT, day, now - timedelta(minutes=1), now + timedelta(hours=2))
        db.session.commit()
        found = ballot.id, [slot.id for slot in ballot_slots(ballot)]
        db.engine.dispose()
    return found


def client_process(base, ballot_id, slot_list, clients, start_n, start, deadline, path, out):
    """``clients`` threads on keep-alive connections entering (or asking /healthz) from
    ``start`` until ``deadline``; put [(status, seconds, nik or ""), ...] on ``out``."""
    import threading

    host, port = base.removeprefix("http://").split(":")
    results: list[tuple[int, float, str]] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        rng = random.Random(start_n + index)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        n = start_n + index * 100_000
        mine = []
        time.sleep(max(0.0, start - time.time()))
        while time.time() < deadline:
            began = time.perf_counter()
            nik = ""
            try:
                if path == "/healthz":
                    conn.request("GET", "/healthz")
                else:
                    nik = rush.make_nik(n)
                    n += 1
                    prefs = rng.sample(slot_list, rng.randint(1, min(3, len(slot_list))))
                    body = json.dumps(
                        {"name": "Warga Bench", "nik": nik, "phone": "081234567890",
                         "preferences": prefs}
                    )  # fmt: skip
                    conn.request(
                        "POST", f"/api/v1/ballots/{ballot_id}/entries", body,
                        {"Content-Type": "application/json"},
                    )  # fmt: skip
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
            mine.append((status, time.perf_counter() - began, nik))
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(results)


def drive(base, path, seconds, clients, processes, ballot_id=0, slot_list=(), seed=0):
    """Run the load for ``seconds``; return (results, seconds)."""
    out: mp.Queue = mp.Queue()
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    start = time.time() + 1.0
    deadline = start + seconds
    procs = [
        mp.Process(
            target=client_process,
            args=(
                base,
                ballot_id,
                list(slot_list),
                per[i],
                seed + i * 2_000_000,
                start,
                deadline,
                path,
                out,
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


def audit_entries(env: dict[str, str], ballot_id: int, accepted: set[str]) -> tuple[int, int]:
    """(lost, doubled): entries answered 201 without a row or rows not answered 201
    (warm-up excluded by the caller's NIKs), and NIKs entered twice."""
    os.environ.update(env)
    from sqlalchemy import select

    from app import create_app
    from ballots.models import BallotEntry
    from extensions import db
    from slots.identity import hash_nik

    app = create_app()
    with app.app_context():
        rows = db.session.execute(
            select(BallotEntry.resident_id).where(BallotEntry.ballot_id == ballot_id)
        ).all()
        from slots.models import Resident

        hashes = set(
            db.session.scalars(
                select(Resident.nik_hash)
                .join(BallotEntry, BallotEntry.resident_id == Resident.id)
                .where(BallotEntry.ballot_id == ballot_id)
            )
        )
        key = app.config["NIK_HASH_KEY"]
        lost = sum(1 for nik in accepted if hash_nik(nik, key) not in hashes)
        doubled = len(rows) - len({r.resident_id for r in rows})
        db.engine.dispose()
    return lost, doubled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--quick", action="store_true", help="12 s of entries (< 1 minute)")
    parser.add_argument("--seconds", type=int, default=30, help="seconds of entries in all")
    parser.add_argument(
        "--rounds", type=int, default=6,
        help="entry/healthz rounds (the ratio is their median)",
    )  # fmt: skip
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--processes", type=int, default=5, help="client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds first")
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
        help="Redis for the message queue (its database is emptied); '' sends inline",
    )  # fmt: skip
    args = parser.parse_args()
    seconds = 12 if args.quick else args.seconds
    rush.PG_URL = os.environ["BENCH_PG_URL"]
    with tempfile.TemporaryDirectory(prefix="antri-bench-ballot-") as tmp:
        env = rush.prepare_database(args.sqlite, Path(tmp), args.redis_url)
        ballot_id, slots = open_ballot(env)
        print(
            f"database {'SQLite' if args.sqlite else 'PostgreSQL'}; gunicorn {args.workers} "
            f"workers x {args.threads} threads; {args.clients} clients in {args.processes} "
            f"processes; {os.cpu_count()} cores; ballot {ballot_id} over {len(slots)} slots"
        )
        with gunicorn(env, workers=args.workers, threads=args.threads) as base:
            drive(base, "/healthz", args.warmup, args.clients, args.processes)
            # Warm-up entries (distinct NIKs, not counted) load every worker's lazy state.
            drive(base, "entries", args.warmup, args.clients, args.processes, ballot_id,
                  slots, seed=140_000_000)  # fmt: skip
            rush.analyze(env)  # as autovacuum would: see booking_rush.analyze
            # Entries and /healthz alternate in rounds and the ratio is the median of the
            # rounds' ratios: this machine's speed drifts by a third within seconds, so
            # more and shorter pairs (2 s of entries, 1.5 s of /healthz in --quick) cancel
            # more of the drift than three long ones.
            results, trivial, ratios = [], [], []
            entry_seconds = max(2, seconds // args.rounds)
            trivial_seconds = max(1.5, entry_seconds * 3 / 4)
            for round_ in range(args.rounds):
                entered, elapsed = drive(
                    base, "entries", entry_seconds, args.clients, args.processes,
                    ballot_id, slots, seed=round_ * 10_000_000,
                )  # fmt: skip
                rate = rush.summarise(
                    f"round {round_ + 1} entries", [r[:2] for r in entered], elapsed
                )
                answered, elapsed = drive(
                    base, "/healthz", trivial_seconds, args.clients, args.processes
                )
                trivial_rate = rush.summarise(
                    f"round {round_ + 1} healthz", [r[:2] for r in answered], elapsed
                )
                results += entered
                trivial += answered
                ratios.append(rate / trivial_rate)
            rush.summarise("entries", [r[:2] for r in results], entry_seconds * args.rounds)
            rush.summarise("healthz", [r[:2] for r in trivial], trivial_seconds * args.rounds)
        accepted = {nik for status, _, nik in results if status == 201}
        errors = sum(1 for status, _, _ in results if status != 201)
        lost, doubled = audit_entries(env, ballot_id, accepted)
        if args.redis_url:
            import redis

            redis.Redis.from_url(args.redis_url).flushdb()
        print(f"entered {len(accepted)}, other answers {errors}")
        print("ratios of the rounds: " + ", ".join(f"{r:.2f}" for r in ratios))
        print(f"ratio={statistics.median(ratios):.2f} lost={lost} doubled={doubled}")


if __name__ == "__main__":
    main()

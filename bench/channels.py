"""USSD benchmark (issue 17 §3): concurrent sessions each walking the whole booking menu
against a real server, as a USSD gateway drives it.

Starts Antri under gunicorn on PostgreSQL (``antri_bench``, made afresh; ``--sqlite``
for SQLite), seeded with the Jakarta market points and their slots (``flask
seed-demo``), then runs ``--sessions`` USSD sessions at once (client threads spread
over several processes, one keep-alive connection per session). Each session walks
menu -> 1 (book) -> ``pasar`` -> a market -> a day -> a time -> NIK -> name -> 1 (yes),
choosing among the options its screen lists. Gateways close a session after ~15 s, so
each hop must answer well under a second: the target is p99 < 100 ms per hop.

Prints p50/p99 per hop (ms), sessions completed, and lost: a session that ended
with a booking code (or a waiting-list code) that the database does not hold for its
phone. The last line reads ``completed=<n> lost=<n> p99_max_ms=<ms>``.

    .venv/bin/python bench/channels.py                 # 200 sessions, PostgreSQL
    .venv/bin/python bench/channels.py --sqlite --sessions 50
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.booking_rush import make_nik, prepare_database  # noqa: E402
from tests.servers import gunicorn  # noqa: E402

SECRET = "bench-ussd-key"  # noqa: S105  (the bench server's own, thrown away)
HOPS = ("menu", "book", "area", "market", "day", "time", "nik", "name", "confirm")
_OPTION = re.compile(r"^(\d) ", re.M)


def _options(screen: str) -> int:
    """How many numbered choices a screen lists (``0 More`` not counted)."""
    return len([n for n in _OPTION.findall(screen) if n != "0"])


def session_walk(base: str, number: int, think: float = 0.0) -> tuple[list[float], str, str]:
    """Walk one session, ``think`` seconds between hops (a resident reading and
    typing); return (hop latencies in ms, the last screen, the phone)."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    phone = f"0812{number:08d}"
    session = f"bench-{number}-{time.time_ns()}"
    choices: list[str] = []
    latencies = []
    screen = ""
    for hop in HOPS:
        if think and hop != "menu":
            time.sleep(think)
        if hop == "book":
            choices.append("1")
        elif hop == "area":
            choices.append("pasar")
        elif hop in ("market", "day", "time"):
            count = max(_options(screen), 1)
            choices.append(str(number % count + 1))
        elif hop == "nik":
            choices.append(make_nik(number + 7_000_000))
        elif hop == "name":
            choices.append(f"Warga Bench {number}")
        elif hop == "confirm":
            choices.append("1")
        body = urllib.parse.urlencode(
            {
                "sessionId": session,
                "serviceCode": "*123#",
                "phoneNumber": phone,
                "text": "*".join(choices),
            }
        )
        if think:  # the server closes a connection idle past its keep-alive (2 s)
            connection.close()
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        started = time.perf_counter()
        connection.request(
            "POST",
            f"/api/v1/channels/ussd?key={SECRET}",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = connection.getresponse()
        screen = answer.read().decode()
        latencies.append((time.perf_counter() - started) * 1000)
        if answer.status != 200 or screen.startswith("END") and hop != "confirm":
            break
    connection.close()
    return latencies, screen, phone


def client_process(base: str, numbers: list[int], start_at: float, think: float, out) -> None:
    """Run one thread per session of ``numbers``, all starting at ``start_at``."""
    results = []
    lock = threading.Lock()

    def run(number: int) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        outcome = session_walk(base, number, think)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(n,)) for n in numbers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(results)


def lost_sessions(env: dict[str, str], outcomes) -> int:
    """Sessions whose last screen names a code the database does not hold for the
    session's phone (a booking or a waiting-list entry), or that never got to END."""
    os.environ.update(env)
    from sqlalchemy import select

    from app import create_app
    from extensions import db
    from slots.identity import normalise_phone
    from slots.models import Booking, WaitingListEntry

    app = create_app()
    lost = 0
    with app.app_context():
        held = {
            (phone, code)
            for model in (Booking, WaitingListEntry)
            for phone, code in db.session.execute(select(model.phone, model.code))
        }
        for _, screen, phone in outcomes:
            found = re.search(r"[Kk]ode ([A-Z0-9]{8})", screen)
            ended = screen.startswith("END") and found is not None
            if not ended or (normalise_phone(phone), found.group(1)) not in held:
                lost += 1
        db.engine.dispose()
    return lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="seconds between a session's hops (0: back to back, the server saturated)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = prepare_database(args.sqlite, Path(tmp), "")
        env.update({"USSD_INBOUND_SECRET": SECRET, "REDIS_URL": ""})
        print(
            f"{'sqlite' if args.sqlite else 'postgresql'}; gunicorn {args.workers} workers x "
            f"{args.threads} threads; {args.sessions} USSD sessions at once, "
            f"{args.think} s between hops"
        )
        with gunicorn(env, workers=args.workers, threads=args.threads) as base:
            for n in range(4 * args.workers):  # warm every worker up
                session_walk(base, 9_000_000 + n)
            queue: mp.Queue = mp.Queue()
            start_at = time.time() + 1.0
            shares = [list(range(p, args.sessions, args.processes)) for p in range(args.processes)]
            workers = [
                mp.Process(target=client_process, args=(base, share, start_at, args.think, queue))
                for share in shares
            ]
            for worker in workers:
                worker.start()
            outcomes = [item for _ in workers for item in queue.get()]
            for worker in workers:
                worker.join()
            elapsed = time.time() - start_at
        warmups = {f"0812{9_000_000 + n:08d}" for n in range(4 * args.workers)}
        completed = sum(1 for _, screen, _ in outcomes if screen.startswith("END"))
        lost = lost_sessions(env, [o for o in outcomes if o[2] not in warmups])
    worst = 0.0
    for index, hop in enumerate(HOPS):
        values = sorted(lat[index] for lat, _, _ in outcomes if len(lat) > index)
        if not values:
            continue
        p50 = statistics.median(values)
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        worst = max(worst, p99)
        print(f"hop {index} {hop:<8} n={len(values):4d} p50={p50:6.1f} ms p99={p99:6.1f} ms")
    print(f"wall time {elapsed:.1f} s for {len(outcomes)} sessions")
    print(f"completed={completed} lost={lost} p99_max_ms={worst:.1f}")


if __name__ == "__main__":
    main()

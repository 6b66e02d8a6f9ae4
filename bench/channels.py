"""USSD benchmark (issue 17 §3, "Tests and figures"): 200 concurrent USSD sessions, each
walking the whole booking menu against a real server as a USSD gateway drives it; p99
per hop (target: under 100 ms on this machine) and 0 lost.

Starts Antri under gunicorn on PostgreSQL (``BENCH_PG_URL``, default ``antri_bench``,
made afresh; ``--sqlite`` for SQLite), seeded with the Jakarta market points and their
slots (``flask seed-demo``), then runs ``--sessions`` USSD sessions at once (client
threads spread over several processes). Each session walks menu -> 1 (book) ->
``pasar`` -> a market -> a day -> a time -> NIK -> name -> 1 (yes), choosing among the
options its screen lists: nine hops.

Load models (``--mode``):

- ``paced`` (the default): what "200 concurrent sessions" means on a phone network.
  A resident reads each screen and types an answer, so a session's hops are separated
  by a think time drawn uniformly between ``--think-min`` and ``--think-max`` (2-6 s),
  and the sessions do not all dial in the same millisecond: each starts at a moment
  drawn uniformly over the first think-time window (0 to the longest think time).
  All 200 sessions are open at once for most of the run (a walk takes ~30 s); the
  server sees ~200 / 4 s = ~50 hops/s. Each resident picks a market (of the five
  ``pasar`` lists), a day and a time uniformly among those its screen offers. The
  draws come from RNGs seeded with ``--seed`` (default 17), so two runs offer the
  same load. Every hop is a fresh connection, as a gateway's callback is (gunicorn
  closes keep-alives idle for 2 s).
- ``saturate``: every session starts at once and sends its next hop as soon as the
  last one answered (one keep-alive connection per session): the server saturated, a
  worst case no gateway produces. Its latencies are mostly queueing: they measure
  throughput (hops/s), not what a resident waits for.
- ``both``: ``paced``, then ``saturate``, on the same server (distinct NIKs and phones).

Per model it prints sessions, completed (ended with a booking or waiting-list code),
lost, hops/s, and p50/p95/p99 per hop kind and over all hops (ms, nearest rank), then
the verdict against the target (every hop kind's p99 < ``--target-ms`` and 0 lost).
Lost: a session that ended with an error (a status other than 200, a broken
connection, an ``END`` screen without a code) or whose code the database does not hold
for its phone (a booking or a waiting-list entry). Its last line reads
``<mode>: completed=<n> lost=<n> p99_max_ms=<ms> target=<met|missed>``.

    .venv/bin/python bench/channels.py                     # paced, 200 sessions
    .venv/bin/python bench/channels.py --mode both
    .venv/bin/python bench/channels.py --mode saturate --sqlite --sessions 50
"""

from __future__ import annotations

import argparse
import http.client
import math
import multiprocessing as mp
import os
import random
import re
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.booking_rush import make_nik, prepare_database  # noqa: E402
from tests.servers import gunicorn  # noqa: E402

SECRET = "bench-ussd-key"  # noqa: S105  (the bench server's own, thrown away)
HOPS = ("menu", "book", "area", "market", "day", "time", "nik", "name", "confirm")
_OPTION = re.compile(r"^(\d) ", re.M)
_CODE = re.compile(r"\b(?:[Kk]ode|Code) ([A-Z0-9]{8})")  # either language
WARMUP_BASE = 9_000_000  # session numbers of the warm-up walks
MODE_BASE = {"paced": 0, "saturate": 100_000}  # distinct NIKs and phones per model


def _options(screen: str) -> int:
    """How many numbered choices a screen lists (``0 More`` not counted)."""
    return len([n for n in _OPTION.findall(screen) if n != "0"])


@dataclass
class Outcome:
    """One session walked: hop latencies (ms, in hop order), the last screen, the
    phone, and the error that ended it ("" when none)."""

    latencies: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)  # each hop's send instant, epoch s
    screen: str = ""
    phone: str = ""
    error: str = ""


def _choice(hop: str, number: int, screen: str, rng: random.Random) -> str:
    """What session ``number`` types at ``hop``, having read ``screen``: a market, day
    and time drawn uniformly (``rng``) among those the screen lists."""
    if hop == "book":
        return "1"
    if hop == "area":
        return "pasar"
    if hop in ("market", "day", "time"):
        return str(rng.randint(1, max(_options(screen), 1)))
    if hop == "nik":
        return make_nik(number + 7_000_000)
    if hop == "name":
        return f"Warga Bench {number}"
    return "1"  # confirm: yes


def session_walk(
    base: str, number: int, thinks: list[float] | None = None, seed: int = 17
) -> Outcome:
    """Walk one session. ``thinks``: seconds to wait before each hop after the first
    (paced; a fresh connection per hop), or None: back to back on one keep-alive
    connection (saturate); its choices come from an RNG seeded with (``seed``,
    ``number``). Returns the Outcome."""
    rng = random.Random(f"{seed}:{number}")  # noqa: S311  (a load model, not a secret)
    url = urllib.parse.urlsplit(base)
    out = Outcome(phone=f"0812{number:08d}")
    session = f"bench-{number}-{time.time_ns()}"
    choices: list[str] = []
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        for index, hop in enumerate(HOPS):
            if hop != "menu":
                choices.append(_choice(hop, number, out.screen, rng))
            if thinks is not None and index:
                time.sleep(thinks[index - 1])
                connection.close()
                connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            body = urllib.parse.urlencode(
                {
                    "sessionId": session,
                    "serviceCode": "*123#",
                    "phoneNumber": out.phone,
                    "text": "*".join(choices),
                }
            )
            started = time.perf_counter()
            out.sent.append(time.time())
            connection.request(
                "POST",
                f"/api/v1/channels/ussd?key={SECRET}",
                body=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            answer = connection.getresponse()
            out.screen = answer.read().decode()
            out.latencies.append((time.perf_counter() - started) * 1000)
            if answer.status != 200:
                out.error = f"status {answer.status} at {hop}"
                break
            if out.screen.startswith("END") and hop != "confirm":
                out.error = f"ended at {hop}"
                break
    except (OSError, http.client.HTTPException) as exc:
        out.error = f"{type(exc).__name__} at {HOPS[len(out.latencies)]}"
    finally:
        connection.close()
    if not out.error and not _CODE.search(out.screen):
        out.error = "no code in the last screen"
    return out


def warm_up(base: str, concurrent: int) -> None:
    """Walk ``concurrent`` sessions at once, twice, before measuring: every worker's
    code paths and its pool of database connections warm, as on a server in service
    (a connection opened under load costs tens of ms, which a fresh server would
    otherwise charge to the first seconds of the run)."""
    for round_ in range(2):
        threads = [
            threading.Thread(
                target=session_walk, args=(base, WARMUP_BASE + round_ * concurrent + n)
            )
            for n in range(concurrent)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def client_process(
    base: str, plan: list[tuple[int, float, list[float] | None]], t0: float, seed: int, out
):
    """Run one thread per planned session (number, start offset s, thinks), each
    starting ``offset`` seconds after epoch ``t0``; put the Outcomes on ``out``."""
    results = []
    lock = threading.Lock()

    def run(number: int, offset: float, thinks: list[float] | None) -> None:
        time.sleep(max(0.0, t0 + offset - time.time()))
        outcome = session_walk(base, number, thinks, seed)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=item) for item in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(results)


def make_plan(mode: str, sessions: int, think: tuple[float, float], seed: int):
    """Each session's (number, start offset in s, think times before hops 2..9 or None).

    paced: starts uniform over [0, longest think), thinks uniform over ``think``; one
    RNG seeded with ``seed``. saturate: all at 0, no think time."""
    rng = random.Random(seed)  # noqa: S311  (a load model, not a secret)
    low, high = think
    plan = []
    for n in range(sessions):
        number = MODE_BASE[mode] + n
        if mode == "saturate":
            plan.append((number, 0.0, None))
        else:
            thinks = [rng.uniform(low, high) for _ in HOPS[1:]]
            plan.append((number, rng.uniform(0.0, high), thinks))
    return plan


def run_mode(base: str, mode: str, args) -> tuple[list[Outcome], float]:
    """Drive one load model; return the Outcomes and the wall time (s)."""
    plan = make_plan(mode, args.sessions, (args.think_min, args.think_max), args.seed)
    shares = [plan[p :: args.processes] for p in range(args.processes)]
    queue: mp.Queue = mp.Queue()
    t0 = time.time() + 1.0
    workers = [
        mp.Process(target=client_process, args=(base, s, t0, args.seed, queue)) for s in shares
    ]
    for worker in workers:
        worker.start()
    outcomes = [item for _ in workers for item in queue.get()]
    for worker in workers:
        worker.join()
    return outcomes, time.time() - t0


def missing_codes(env: dict[str, str], outcomes: list[Outcome]) -> int:
    """How many error-free sessions show a code that the database does not hold for
    the session's phone (a booking or a waiting-list entry)."""
    os.environ.update(env)
    from sqlalchemy import select

    from app import create_app
    from extensions import db
    from slots.identity import normalise_phone
    from slots.models import Booking, WaitingListEntry

    app = create_app()
    with app.app_context():
        held = {
            (phone, code)
            for model in (Booking, WaitingListEntry)
            for phone, code in db.session.execute(select(model.phone, model.code))
        }
        db.engine.dispose()
    return sum(
        1
        for o in outcomes
        if not o.error and (normalise_phone(o.phone), _CODE.search(o.screen).group(1)) not in held
    )


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p`` percentile (0 < p <= 1) of sorted ``values``."""
    return values[max(0, math.ceil(p * len(values)) - 1)]


def timeline(outcomes: list[Outcome], t0: float, target: float, step: float = 5.0) -> None:
    """Print, per ``step`` seconds of the run, the hops sent and how many of them took
    ``target`` ms or more: shows whether slow hops are spread out or a stall."""
    buckets: dict[int, list[int]] = {}
    for o in outcomes:
        for sent, latency in zip(o.sent, o.latencies, strict=False):
            bucket = buckets.setdefault(int((sent - t0) // step), [0, 0])
            bucket[0] += 1
            bucket[1] += latency >= target
    line = " ".join(f"{k * step:.0f}s:{n}/{slow}" for k, (n, slow) in sorted(buckets.items()))
    print(f"  timeline (from the first send, every {step:.0f} s: hops/slow): {line}")


def report(mode: str, outcomes: list[Outcome], missing: int, wall: float, target: float):
    """Print one model's figures and verdict; return the summary line."""
    errors = [o for o in outcomes if o.error]
    completed = len(outcomes) - len(errors)
    lost = len(errors) + missing
    hops = sum(len(o.latencies) for o in outcomes)
    print(f"[{mode}] sessions={len(outcomes)} completed={completed} lost={lost} "
          f"(errors={len(errors)} missing_in_db={missing}) hops={hops} "
          f"wall={wall:.1f}s hops/s={hops / wall:.1f}")  # fmt: skip
    for reason in sorted({o.error for o in errors})[:5]:
        example = next(o.screen for o in errors if o.error == reason)
        count = sum(1 for o in errors if o.error == reason)
        print(f"  error: {reason} x{count}, e.g. {example[:100]!r}")
    worst = 0.0
    rows = [(hop, [o.latencies[i] for o in outcomes if len(o.latencies) > i])
            for i, hop in enumerate(HOPS)]  # fmt: skip
    rows.append(("all", [v for o in outcomes for v in o.latencies]))
    for hop, values in rows:
        if not values:
            continue
        values.sort()
        p50, p95, p99 = (percentile(values, p) for p in (0.50, 0.95, 0.99))
        if hop != "all":
            worst = max(worst, p99)
        print(f"  {hop:<8} n={len(values):5d} p50={p50:7.1f} p95={p95:7.1f} p99={p99:7.1f} ms")
    sent = [t for o in outcomes for t in o.sent]
    if sent:
        timeline(outcomes, min(sent), target)
    met = worst < target and lost == 0
    verdict = "met" if met else "missed"
    print(f"  target (every hop kind p99 < {target:.0f} ms, 0 lost): {verdict.upper()}")
    return f"{mode}: completed={completed} lost={lost} p99_max_ms={worst:.1f} target={verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("paced", "saturate", "both"), default="paced")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--think-min", type=float, default=2.0, help="s, paced")
    parser.add_argument("--think-max", type=float, default=6.0, help="s, paced")
    parser.add_argument("--seed", type=int, default=17, help="the paced model's RNG")
    parser.add_argument("--target-ms", type=float, default=100.0)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    modes = ("paced", "saturate") if args.mode == "both" else (args.mode,)
    load = os.getloadavg()
    summaries = []
    with tempfile.TemporaryDirectory() as tmp:
        env = prepare_database(args.sqlite, Path(tmp), "")
        env.update({"USSD_INBOUND_SECRET": SECRET, "REDIS_URL": ""})
        print(f"{'sqlite' if args.sqlite else 'postgresql'}; gunicorn {args.workers} workers x "
              f"{args.threads} threads; {args.sessions} USSD sessions; think "
              f"{args.think_min}-{args.think_max} s (paced), seed {args.seed}; "
              f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
        with gunicorn(env, workers=args.workers, threads=args.threads) as base:
            warm_up(base, args.workers * args.threads)
            results = [(mode, *run_mode(base, mode, args)) for mode in modes]
        for mode, outcomes, wall in results:
            missing = missing_codes(env, outcomes)
            summaries.append(report(mode, outcomes, missing, wall, args.target_ms))
    load = os.getloadavg()
    print(f"load average after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for line in summaries:
        print(line)


if __name__ == "__main__":
    main()

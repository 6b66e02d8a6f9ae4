"""The app's command line: ``flask --app app <group> <command>``.

Each feature keeps its commands in its own ``cli.py`` (``admin.cli``: slots, points,
schedules, audit; ``accounts.cli``: users; ``qr.cli``: tickets); here are the commands of
the app as a whole (the outbox, the worker, the demo data) and ``register``, which adds
them all. Each command is one transaction (``common.cli.CommandGroup``): it commits
once at the end or, on an error, changes nothing.
"""

from __future__ import annotations

import secrets
import string
from datetime import time, timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from common.cli import CommandGroup
from common.timeutil import local_date, utcnow
from common.transactions import one_transaction
from extensions import db

_PASSWORD_CHARS = string.ascii_letters + string.digits
DATA_DIR = Path(__file__).resolve().parent / "data"

# Demo opening pattern: morning hand-out in half-hour slots (local time).
DEMO_START, DEMO_END, DEMO_LENGTH, DEMO_CAPACITY = time(7, 0), time(12, 0), 30, 20
DEMO_STAFF_POINT = "JKT-003"  # Pasar Senen Blok III - VI: it has a real address


notices_cli = CommandGroup("notices", help="The outbox of messages to residents.")


@notices_cli.command("deliver")
@click.option("--limit", default=1000, type=click.IntRange(1), help="At most this many.")
@click.option(
    "--retry-now",
    is_flag=True,
    help="First make failed notices and those waiting out a retry back-off due now.",
)
def notices_deliver(limit, retry_now):
    """Send, from this process, the notices that are due (e.g. without a worker)."""
    from notify.outbox import retry_now as make_due
    from notify.relay import deliver_pending

    if retry_now:
        click.echo(f"{make_due()} notices due again")
    click.echo(f"{deliver_pending(limit=limit)} notices sent")


@notices_cli.command("status")
def notices_status():
    """Count the notices per status, then list the failed ones (newest first)."""
    from notify.outbox import failed_notices, outbox_counts

    counts = outbox_counts()
    click.echo(" ".join(f"{status}={count}" for status, count in counts.items()))
    for notice in failed_notices():
        click.echo(
            f"failed #{notice.id} {notice.kind} booking {notice.booking.code} "
            f"attempts={notice.attempts} error={notice.last_error}"
        )


@click.command("worker")
@click.option("--burst", is_flag=True, help="Work until the queue is empty, then exit.")
@with_appcontext
def worker_command(burst):
    """Run an RQ worker (with RQ's schedulers) for Antri's background jobs.

    Needs REDIS_URL. Run as many as needed; every job is safe to run in several.
    """
    from jobs import run_worker

    if not current_app.config["REDIS_URL"]:
        raise click.ClickException("REDIS_URL is not set: without Redis, jobs run inline.")
    run_worker(burst=burst)


@click.command("seed-demo")
@click.option("--days", default=7, type=click.IntRange(1, 60), help="Days of slots from today.")
@with_appcontext
@one_transaction
def seed_demo(days):
    """Load the Jakarta market points, slots for the coming days, and demo accounts."""
    from sqlalchemy import select

    from accounts.models import User
    from accounts.service import create_user
    from slots.points import get_market_point, import_market_points, search_market_points
    from slots.schedules import generate_slots

    if current_app.config["ANTRI_ENV"] == "production":
        raise click.ClickException("seed-demo refuses to run with ANTRI_ENV=production")
    config = current_app.config
    created, updated = import_market_points(
        DATA_DIR / "jakarta_markets.csv", config["DEFAULT_SAFE_LIMIT"], config["DEFAULT_TIMEZONE"]
    )
    click.echo(f"market points: {created} created, {updated} updated")
    now = utcnow()
    made = 0
    for point in search_market_points():
        today = local_date(now, point.timezone)
        for offset in range(days):
            made += len(
                generate_slots(
                    point,
                    today + timedelta(days=offset),
                    DEMO_START,
                    DEMO_END,
                    DEMO_LENGTH,
                    DEMO_CAPACITY,
                    now,
                ).created
            )
    click.echo(f"slots: {made} created")
    staff_point = get_market_point(DEMO_STAFF_POINT)
    accounts = [
        ("admin@antri.local", "admin", None),
        ("supervisor@antri.local", "supervisor", None),
        ("staff@antri.local", "staff", staff_point),
    ]
    path = Path(current_app.instance_path) / "demo-accounts.txt"
    lines = []
    for email, role, point in accounts:
        if db.session.scalar(select(User).where(User.email == email)) is not None:
            continue  # keep the password already handed out
        password = "".join(secrets.choice(_PASSWORD_CHARS) for _ in range(12))
        create_user(email, role, password, point)
        where = f" (gate: {point.code} {point.name})" if point else ""
        lines.append(f"  {role:<10} {email:<24} password: {password}{where}")
    if lines:
        # Keep the lines of accounts that still exist; replace those made anew.
        fresh = {line.split()[1] for line in lines}
        kept = [
            line
            for line in (path.read_text().splitlines() if path.exists() else [])
            if line.split() and line.split()[1] not in fresh
        ]
        path.write_text("\n".join(kept + lines) + "\n")
        path.chmod(0o600)
    click.echo("Demo accounts (sign in at /login):")
    click.echo(path.read_text().rstrip() if path.exists() else "  (none; see users create)")


def register(app: Flask) -> None:
    """Add Antri's commands to ``app.cli``."""
    from accounts.cli import users_cli
    from admin.cli import audit_cli, points_cli, schedules_cli, slots_cli, stock_cli
    from ballots.cli import ballots_cli
    from channels.cli import channels_cli
    from qr.cli import tickets_cli

    for group in (
        slots_cli,
        users_cli,
        tickets_cli,
        notices_cli,
        points_cli,
        schedules_cli,
        audit_cli,
        stock_cli,
        ballots_cli,
        channels_cli,
    ):
        app.cli.add_command(group)
    app.cli.add_command(worker_command)
    app.cli.add_command(seed_demo)

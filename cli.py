"""Operator commands: ``flask --app app seed-demo | slots generate | users create | users token
| points update``.

Each command is one transaction: it commits at the end or, on an error, changes nothing.
"""

from __future__ import annotations

import secrets
import string
from datetime import date, datetime, time, timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from common.audit import CLI, record
from common.errors import DomainError
from common.timeutil import local_date, utcnow
from extensions import db

_PASSWORD_CHARS = string.ascii_letters + string.digits
DATA_DIR = Path(__file__).resolve().parent / "data"

# Demo opening pattern: morning hand-out in half-hour slots (local time).
DEMO_START, DEMO_END, DEMO_LENGTH, DEMO_CAPACITY = time(7, 0), time(12, 0), 30, 20
DEMO_STAFF_POINT = "JKT-003"  # Pasar Senen Blok III - VI: it has a real address


def _fail(exc: DomainError) -> None:
    """Roll back and stop the command with the error's code, message and details."""
    db.session.rollback()
    details = " ".join(f"{k}={v}" for k, v in exc.details.items())
    raise click.ClickException(f"{exc.code}: {exc.message} {details}".strip())


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD") from None


def _parse_time(value: str) -> time:
    try:
        return datetime.strptime(value, "%H:%M").time()
    except ValueError:
        raise click.BadParameter("use HH:MM (24-hour)") from None


slots_cli = AppGroup("slots", help="Create and inspect slots.")
tickets_cli = AppGroup("tickets", help="Ticket signing keys.")
users_cli = AppGroup("users", help="Manage staff, supervisor and admin accounts.")


@slots_cli.command("generate")
@click.argument("point_code")
@click.option("--date", "day", required=True, help="Local date, YYYY-MM-DD.")
@click.option("--start", required=True, help="Local start time, HH:MM.")
@click.option("--end", required=True, help="Local end time, HH:MM.")
@click.option("--length", type=click.IntRange(1, 24 * 60), required=True, help="Minutes.")
@click.option("--capacity", type=click.IntRange(0), required=True, help="Bookings per slot.")
def slots_generate(point_code, day, start, end, length, capacity):
    """Create back-to-back slots at POINT_CODE (idempotent; local time)."""
    from slots.points import get_market_point
    from slots.schedules import generate_slots

    try:
        point = get_market_point(point_code)
        result = generate_slots(
            point, _parse_date(day), _parse_time(start), _parse_time(end), length, capacity
        )
    except DomainError as exc:
        _fail(exc)
    record(
        CLI,
        "slots.generate",
        "market_point",
        point.code,
        {},
        {"date": day, "hours": f"{start}-{end}", "length": length, "capacity": capacity,
         "created": len(result.created)},
        point.id,
    )  # fmt: skip
    db.session.commit()
    click.echo(
        f"{point.code}: {len(result.created)} slots created, {len(result.existing)} already existed"
    )


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["staff", "supervisor", "admin"]), required=True)
@click.option("--point", "point_code", help="Market point code (required for staff).")
@click.option("--password", required=True, help="At least 8 characters.")
def users_create(email, role, point_code, password):
    """Create an account (or update its role, point and password)."""
    from accounts.service import admin_create_user
    from slots.points import get_market_point

    try:
        point = get_market_point(point_code) if point_code else None
        user = admin_create_user(email, role, password, point, CLI, update=True)
    except DomainError as exc:
        _fail(exc)
    db.session.commit()
    where = f" at {user.market_point.code}" if user.market_point else ""
    click.echo(f"{user.email}: {user.role}{where}")


@users_cli.command("token")
@click.argument("email")
@click.option("--name", default="cli", help="A label for the device or script.")
def users_token(email, name):
    """Issue a bearer token for EMAIL; the token is the last line printed."""
    from sqlalchemy import select

    from accounts.models import User
    from accounts.service import issue_token

    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.active:
        raise click.ClickException(f"no active account {email}")
    token = issue_token(user, name)
    record(CLI, "token.issue", "account", user.id, {}, {"user": user.email, "label": name})
    db.session.commit()
    click.echo(f"Bearer token for {user.email} ({user.role}), shown once:")
    click.echo(token)


@slots_cli.command("expire")
def slots_expire():
    """Mark no-shows (never checked in by slot end + CHECKIN_LATE_MINUTES) and end
    the waiting lists of slots that are over. Safe to run as often as you like."""
    from slots.housekeeping import expire_past_slots

    no_shows, expired = expire_past_slots()
    db.session.commit()
    click.echo(f"{no_shows} no-shows marked, {expired} waiting-list places ended")


notices_cli = AppGroup("notices", help="The outbox of messages to residents.")


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


@tickets_cli.command("keys")
def tickets_keys():
    """List the ticket keys: id, created, and which one signs."""
    from qr.service import public_keys_json

    for key in public_keys_json():
        mark = "  (signs new tickets)" if key["signing"] else ""
        click.echo(f"{key['kid']:>5}  {key['created_at'] or '-':<32} {key['public_key']}{mark}")


def _refuse_with_env_key() -> None:
    if current_app.config.get("TICKET_PRIVATE_KEY"):
        raise click.ClickException(
            "the signing key comes from TICKET_PRIVATE_KEY: rotate it there "
            "(a new TICKET_KEY_ID with a new key), not with this command"
        )


@tickets_cli.command("rotate-key")
def tickets_rotate_key():
    """Make a new signing key; older keys keep verifying the tickets they signed."""
    from qr.keys import rotate

    _refuse_with_env_key()
    kid = rotate(current_app.config["TICKET_KEY_DIR"])
    record(CLI, "ticket_key.rotate", "ticket_key", kid, {}, {"signing": kid})
    db.session.commit()
    click.echo(f"key {kid} now signs new tickets; older keys still verify")


@tickets_cli.command("retire-key")
@click.argument("kid", type=int)
@click.option("--force", is_flag=True, help="Retire even if tickets may still carry it.")
def tickets_retire_key(kid, force):
    """Delete key KID once no ticket signed with it can still be used.

    Tickets are signed when shown, so a key may be on any ticket shown before the next
    key was made. It is refused while a confirmed booking made before then has a slot
    that has not ended yet, unless --force.
    """
    from sqlalchemy import func, select

    from qr.keys import key_ids, load_keyring, retire
    from slots.models import CHECKED_IN, CONFIRMED, Booking, Slot

    late = timedelta(minutes=current_app.config["CHECKIN_LATE_MINUTES"])

    _refuse_with_env_key()
    directory = current_app.config["TICKET_KEY_DIR"]
    ring = load_keyring(directory)
    later = [k for k in key_ids(directory) if k > kid]
    successor_made = ring.created_at.get(later[0]) if later else None
    if not force and later:
        if successor_made is None:
            raise click.ClickException("the next key has no creation time; use --force")
        open_tickets = db.session.scalar(
            select(func.count(Booking.id))
            .join(Slot, Booking.slot_id == Slot.id)
            .where(
                # Until check-in closes, and a checked-in ticket still checks out.
                Booking.status.in_((CONFIRMED, CHECKED_IN)),
                Booking.created_at < successor_made,
                Slot.ends_at > utcnow() - late,
            )
        )
        if open_tickets:
            raise click.ClickException(
                f"{open_tickets} confirmed bookings from before key {later[0]} have slots "
                "that have not ended; retire later or use --force"
            )
    try:
        retire(directory, kid)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    record(CLI, "ticket_key.retire", "ticket_key", kid, {"retired": False}, {"force": force})
    db.session.commit()
    click.echo(f"key {kid} retired")


@click.command("seed-demo")
@click.option("--days", default=7, type=click.IntRange(1, 60), help="Days of slots from today.")
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
    db.session.commit()
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
    app.cli.add_command(slots_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(tickets_cli)
    app.cli.add_command(notices_cli)
    app.cli.add_command(worker_command)
    app.cli.add_command(seed_demo)
    from admin import cli as admin_cli

    admin_cli.register(app, slots_cli, users_cli)

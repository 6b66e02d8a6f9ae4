"""Admin actions at the command line, for operators' scripts: the same services as the
admin pages and API, audited with the actor ``cli``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup

from cli import _fail
from common.audit import CLI
from common.errors import DomainError
from extensions import db

points_cli = AppGroup("points", help="Market points: update, (de)activate, import, export.")
schedules_cli = AppGroup("schedules", help="Slot schedules with a publish time.")
audit_cli = AppGroup("audit", help="The audit log of admin actions.")


def _commit() -> None:
    from notify.relay import commit_and_deliver

    commit_and_deliver()


@points_cli.command("update")
@click.argument("code")
@click.option("--safe-limit", type=int, help="People inside at once.")
@click.option("--name")
@click.option("--opens", help="Opening time, HH:MM local.")
@click.option("--closes", help="Closing time, HH:MM local.")
@click.option("--household-limit/--no-household-limit", default=None)
def points_update(code, safe_limit, name, opens, closes, household_limit):
    """Change a market point: its safe limit, name, hours or household limit."""
    from cli import _parse_time
    from slots.points import (
        PointFields,
        get_point,
        set_safe_limit,
        update_point,
    )

    try:
        point = get_point(code)
        before = point.safe_limit
        if safe_limit is not None:
            set_safe_limit(code, safe_limit, CLI)
        fields = PointFields(
            name=name if name is not None else point.name,
            address=point.address,
            kecamatan=point.kecamatan,
            kecamatan_code=point.kecamatan_code,
            city=point.city,
            safe_limit=point.safe_limit,
            timezone=point.timezone,
            opens_at=_parse_time(opens) if opens else point.opens_at,
            closes_at=_parse_time(closes) if closes else point.closes_at,
            household_limit=(point.household_limit if household_limit is None else household_limit),
        )
        update_point(code, fields, CLI)
    except DomainError as exc:
        _fail(exc)
    _commit()
    click.echo(f"{point.code}: safe limit {before} -> {point.safe_limit}, {point.name}")


@points_cli.command("deactivate")
@click.argument("code")
def points_deactivate(code):
    """Hide a market point from residents (bookings made stay valid)."""
    from slots.points import (
        set_point_active,
    )

    try:
        set_point_active(code, False, CLI)
    except DomainError as exc:
        _fail(exc)
    _commit()
    click.echo(f"{code}: inactive")


@points_cli.command("activate")
@click.argument("code")
def points_activate(code):
    """Show a deactivated market point to residents again."""
    from slots.points import (
        set_point_active,
    )

    try:
        set_point_active(code, True, CLI)
    except DomainError as exc:
        _fail(exc)
    _commit()
    click.echo(f"{code}: active")


@points_cli.command("export")
def points_export():
    """Print every market point as CSV, in the shipped data's columns."""
    from slots.points import (
        export_points_csv,
    )

    sys.stdout.write(export_points_csv())


@points_cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def points_import(path):
    """Create or update market points from a CSV in the shipped data's columns."""
    from slots.points import (
        import_points_csv,
    )

    try:
        created, updated = import_points_csv(path.read_text(encoding="utf-8-sig"), CLI)
    except DomainError as exc:
        _fail(exc)
    _commit()
    click.echo(f"{created} market points created, {updated} updated")


def register(app: Flask, slots_cli: AppGroup, users_cli: AppGroup) -> None:
    """Add the admin commands to the app's CLI (new groups, and commands in the
    existing ``slots`` and ``users`` groups)."""
    from cli import _parse_date, _parse_time

    @slots_cli.command("set-capacity")
    @click.argument("slot_id", type=int)
    @click.argument("capacity", type=int)
    def slots_set_capacity(slot_id, capacity):
        """Change a slot's capacity (never below its booked places)."""
        from slots.staff import set_capacity

        try:
            slot = set_capacity(slot_id, capacity, CLI)
        except DomainError as exc:
            _fail(exc)
        _commit()
        click.echo(f"slot {slot.id}: capacity {slot.capacity}, booked {slot.booked_count}")

    @slots_cli.command("close")
    @click.argument("slot_id", type=int)
    def slots_close(slot_id):
        """Close a slot: cancel its bookings (residents are told), clear its waiting list."""
        from slots.staff import close_slot

        try:
            closed = close_slot(slot_id, CLI)
        except DomainError as exc:
            _fail(exc)
        _commit()
        click.echo(f"slot {slot_id}: {closed.bookings_cancelled} bookings cancelled")

    @slots_cli.command("close-day")
    @click.argument("code")
    @click.option("--date", "day", required=True, help="Local date, YYYY-MM-DD.")
    def slots_close_day(code, day):
        """Close every slot of a market point on a local date."""
        from slots.staff import close_day

        try:
            closed = close_day(code, _parse_date(day), CLI)
        except DomainError as exc:
            _fail(exc)
        _commit()
        click.echo(
            f"{code} {day}: {closed.slots} slots closed, "
            f"{closed.bookings_cancelled} bookings cancelled"
        )

    @slots_cli.command("move")
    @click.argument("booking_code")
    @click.option("--to", "slot_id", type=int, required=True, help="The target slot id.")
    def slots_move(booking_code, slot_id):
        """Move a confirmed booking to another slot with a free place."""
        from slots.staff import move_booking

        try:
            booking = move_booking(booking_code, slot_id, CLI)
        except DomainError as exc:
            _fail(exc)
        _commit()
        click.echo(f"{booking.code}: moved to slot {slot_id}")

    @schedules_cli.command("create")
    @click.argument("code")
    @click.option("--weekdays", default="1234567", help="ISO weekdays, e.g. 12345 = Mon-Fri.")
    @click.option("--start", required=True, help="HH:MM local.")
    @click.option("--end", required=True, help="HH:MM local.")
    @click.option("--length", type=int, required=True, help="Slot minutes.")
    @click.option("--capacity", type=int, required=True, help="Bookings per slot.")
    @click.option("--from", "valid_from", required=True, help="First local date.")
    @click.option("--until", "valid_until", required=True, help="Last local date.")
    @click.option("--publish-days-before", type=int, default=1, show_default=True)
    @click.option("--publish-at", default="07:00", show_default=True, help="HH:MM local.")
    @click.option("--name", default="")
    def schedules_create(
        code,
        weekdays,
        start,
        end,
        length,
        capacity,
        valid_from,
        valid_until,
        publish_days_before,
        publish_at,
        name,
    ):
        """Create a schedule at market point CODE; prints its id (the last line)."""
        from slots.schedules import (
            create_schedule,
        )

        try:
            schedule = create_schedule(
                code,
                name=name,
                weekdays=weekdays,
                start_time=_parse_time(start),
                end_time=_parse_time(end),
                slot_minutes=length,
                capacity=capacity,
                valid_from=_parse_date(valid_from),
                valid_until=_parse_date(valid_until),
                publish_days_before=publish_days_before,
                publish_time=_parse_time(publish_at),
                actor=CLI,
            )
        except DomainError as exc:
            _fail(exc)
        _commit()
        click.echo(schedule.id)

    @schedules_cli.command("preview")
    @click.argument("schedule_id", type=int)
    def schedules_preview(schedule_id):
        """List the slots a schedule makes (local times) and when each opens."""
        from common.timeutil import zone
        from slots.schedules import (
            get_schedule,
            plan_schedule,
        )

        try:
            schedule = get_schedule(schedule_id)
        except DomainError as exc:
            _fail(exc)
        tz = zone(schedule.market_point.timezone)
        for slot in plan_schedule(schedule):
            state = "exists" if slot.exists else ("OVERLAPS" if slot.overlaps else "new")
            click.echo(
                f"{slot.starts_at.astimezone(tz):%Y-%m-%d %H:%M}-"
                f"{slot.ends_at.astimezone(tz):%H:%M} opens "
                f"{slot.publish_at.astimezone(tz):%Y-%m-%d %H:%M} {state}"
            )

    @schedules_cli.command("generate")
    @click.argument("schedule_id", type=int)
    def schedules_generate(schedule_id):
        """Create a schedule's slots (idempotent)."""
        from slots.schedules import (
            generate_from_schedule,
        )

        try:
            created, existing = generate_from_schedule(schedule_id, CLI)
        except DomainError as exc:
            _fail(exc)
        _commit()
        click.echo(f"{created} slots created, {existing} already existed")

    @users_cli.command("disable")
    @click.argument("email")
    def users_disable(email):
        """Disable an account: no sign-in, its tokens refused at once."""
        _user_action(email, lambda user, s: s.set_user_active(user, False, CLI), "disabled")

    @users_cli.command("enable")
    @click.argument("email")
    def users_enable(email):
        """Enable a disabled account."""
        _user_action(email, lambda user, s: s.set_user_active(user, True, CLI), "enabled")

    @users_cli.command("password")
    @click.argument("email")
    @click.option("--password", required=True, help="At least 8 characters.")
    def users_password(email, password):
        """Set a new password for an account."""
        _user_action(
            email, lambda user, s: s.reset_password(user, password, CLI), "password changed"
        )

    @users_cli.command("tokens")
    @click.argument("email", required=False)
    def users_tokens(email):
        """List bearer tokens (id, account, label, created, revoked)."""
        from accounts import service

        user = _find_user(email) if email else None
        for token in service.list_tokens(user):
            revoked = token.revoked_at.isoformat() if token.revoked_at else "active"
            click.echo(
                f"{token.id} {token.user.email} {token.name!r} "
                f"{token.created_at.isoformat()} {revoked}"
            )

    @users_cli.command("revoke-token")
    @click.argument("token_id", type=int)
    def users_revoke_token(token_id):
        """Revoke a bearer token by its id: the next request with it gets 401."""
        from accounts import service

        try:
            service.revoke_token_id(token_id, CLI)
        except DomainError as exc:
            _fail(exc)
        _commit()
        click.echo(f"token {token_id}: revoked")

    @audit_cli.command("export")
    @click.option("--action", default="", help="Only actions starting with this.")
    @click.option("--since", help="From this local date (YYYY-MM-DD, default timezone).")
    def audit_export(action, since):
        """Print the audit log as CSV (newest first)."""
        from flask import current_app

        from common import audit
        from common.timeutil import local_instant, parse_day

        start = None
        if since:
            try:
                day = parse_day(since)
            except ValueError:
                raise click.BadParameter("use YYYY-MM-DD between 2000 and 2100") from None
            start = local_instant(day, _parse_time("00:00"), current_app.config["DEFAULT_TIMEZONE"])
        sys.stdout.write(audit.to_csv(audit.search(action=action, since=start, limit=100_000)))

    app.cli.add_command(points_cli)
    app.cli.add_command(schedules_cli)
    app.cli.add_command(audit_cli)


def _find_user(email: str):
    from sqlalchemy import select

    from accounts.models import User

    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"no account {email}")
    return user


def _user_action(email: str, action, done: str) -> None:
    from accounts import service

    user = _find_user(email)
    try:
        action(user, service)
    except DomainError as exc:
        _fail(exc)
    _commit()
    click.echo(f"{user.email}: {done}")

"""Admin actions at the command line, for operators' scripts: the same services as the
admin pages and API, audited with the actor ``cli``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from common.audit import CLI, record
from common.cli import CommandGroup, fail, parse_date, parse_time
from common.errors import DomainError

slots_cli = CommandGroup("slots", help="Create and inspect slots.")
points_cli = CommandGroup("points", help="Market points: update, (de)activate, import, export.")
schedules_cli = CommandGroup("schedules", help="Slot schedules with a publish time.")
audit_cli = CommandGroup("audit", help="The audit log of admin actions.")
stock_cli = CommandGroup("stock", help="Stock per market point and day (issue 15).")


@points_cli.command("update")
@click.argument("code")
@click.option("--safe-limit", type=int, help="People inside at once.")
@click.option("--name")
@click.option("--opens", help="Opening time, HH:MM local.")
@click.option("--closes", help="Closing time, HH:MM local.")
@click.option("--household-limit/--no-household-limit", default=None)
def points_update(code, safe_limit, name, opens, closes, household_limit):
    """Change a market point: its safe limit, name, hours or household limit."""
    from slots.points import PointFields, get_point, set_safe_limit, update_point

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
            opens_at=parse_time(opens) if opens else point.opens_at,
            closes_at=parse_time(closes) if closes else point.closes_at,
            household_limit=(point.household_limit if household_limit is None else household_limit),
        )
        update_point(code, fields, CLI)
    except DomainError as exc:
        fail(exc)
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
        fail(exc)
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
        fail(exc)
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
    """Create or update market points from a CSV in the shipped data's columns, in
    UTF-8 (with or without BOM), UTF-16 with BOM or Windows-1252; other bytes stop
    with exit code 1 and ``invalid_market_point ... reason=encoding`` (issue 14 item 5)."""
    from slots.points import decode_csv_bytes, import_points_csv

    try:
        raw = path.read_bytes()
    except OSError as exc:  # unreadable (permissions, a vanished file): a message, code 1
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    try:
        created, updated = import_points_csv(decode_csv_bytes(raw), CLI)
    except DomainError as exc:
        fail(exc)
    click.echo(f"{created} market points created, {updated} updated")


# Slots ---------------------------------------------------------------------------------


@slots_cli.command("generate")
@click.argument("point_code")
@click.option("--date", "day", required=True, help="Local date, YYYY-MM-DD.")
@click.option("--start", required=True, help="Local start time, HH:MM.")
@click.option("--end", required=True, help="Local end time, HH:MM.")
@click.option("--length", type=click.IntRange(1, 24 * 60), required=True, help="Minutes.")
@click.option("--capacity", type=click.IntRange(0), required=True, help="Bookings per slot.")
def slots_generate(point_code, day, start, end, length, capacity):
    """Create back-to-back slots at POINT_CODE (idempotent; local time)."""
    from slots import points as slots_points
    from slots import schedules as slots_schedules

    try:
        point = slots_points.get_market_point(point_code)
        result = slots_schedules.generate_slots(
            point, parse_date(day), parse_time(start), parse_time(end), length, capacity
        )
    except DomainError as exc:
        fail(exc)
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
    click.echo(
        f"{point.code}: {len(result.created)} slots created, {len(result.existing)} already existed"
    )


@slots_cli.command("expire")
def slots_expire():
    """Mark no-shows (never checked in by slot end + CHECKIN_LATE_MINUTES) and end
    the waiting lists of slots that are over. Safe to run as often as you like."""
    from slots.housekeeping import expire_past_slots

    no_shows, expired = expire_past_slots()
    click.echo(f"{no_shows} no-shows marked, {expired} waiting-list places ended")


@slots_cli.command("set-capacity")
@click.argument("slot_id", type=int)
@click.argument("capacity", type=int)
def slots_set_capacity(slot_id, capacity):
    """Change a slot's capacity (never below its booked places)."""
    from slots import staff as slots_staff

    try:
        slot = slots_staff.set_capacity(slot_id, capacity, CLI)
    except DomainError as exc:
        fail(exc)
    click.echo(f"slot {slot.id}: capacity {slot.capacity}, booked {slot.booked_count}")


@slots_cli.command("close")
@click.argument("slot_id", type=int)
def slots_close(slot_id):
    """Close a slot: cancel its bookings (residents are told), clear its waiting list."""
    from slots import staff as slots_staff

    try:
        closed = slots_staff.close_slot(slot_id, CLI)
    except DomainError as exc:
        fail(exc)
    click.echo(f"slot {slot_id}: {closed.bookings_cancelled} bookings cancelled")


@slots_cli.command("close-day")
@click.argument("code")
@click.option("--date", "day", required=True, help="Local date, YYYY-MM-DD.")
def slots_close_day(code, day):
    """Close every slot of a market point on a local date."""
    from slots import staff as slots_staff

    try:
        closed = slots_staff.close_day(code, parse_date(day), CLI)
    except DomainError as exc:
        fail(exc)
    click.echo(
        f"{code} {day}: {closed.slots} slots closed, {closed.bookings_cancelled} bookings cancelled"
    )


@slots_cli.command("move")
@click.argument("booking_code")
@click.option("--to", "slot_id", type=int, required=True, help="The target slot id.")
def slots_move(booking_code, slot_id):
    """Move a confirmed booking to another slot with a free place."""
    from slots import staff as slots_staff

    try:
        booking = slots_staff.move_booking(booking_code, slot_id, CLI)
    except DomainError as exc:
        fail(exc)
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
    from slots import schedules as slots_schedules

    try:
        schedule = slots_schedules.create_schedule(
            code,
            name=name,
            weekdays=weekdays,
            start_time=parse_time(start),
            end_time=parse_time(end),
            slot_minutes=length,
            capacity=capacity,
            valid_from=parse_date(valid_from),
            valid_until=parse_date(valid_until),
            publish_days_before=publish_days_before,
            publish_time=parse_time(publish_at),
            actor=CLI,
        )
    except DomainError as exc:
        fail(exc)
    click.echo(schedule.id)


@schedules_cli.command("preview")
@click.argument("schedule_id", type=int)
def schedules_preview(schedule_id):
    """List the slots a schedule makes (local times) and when each opens."""
    from common.timeutil import zone
    from slots import schedules as slots_schedules

    try:
        schedule = slots_schedules.get_schedule(schedule_id)
    except DomainError as exc:
        fail(exc)
    tz = zone(schedule.market_point.timezone)
    for slot in slots_schedules.plan_schedule(schedule):
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
    from slots import schedules as slots_schedules

    try:
        created, existing = slots_schedules.generate_from_schedule(schedule_id, CLI)
    except DomainError as exc:
        fail(exc)
    click.echo(f"{created} slots created, {existing} already existed")


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
        start = local_instant(day, parse_time("00:00"), current_app.config["DEFAULT_TIMEZONE"])
    sys.stdout.write(audit.to_csv(audit.search(action=action, since=start, limit=100_000)))


def _stock_day(_ctx, _param, value: str):
    """The ``--date`` option: a local date YYYY-MM-DD between 2000 and 2100."""
    from common.timeutil import parse_day

    try:
        return parse_day(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD between 2000 and 2100") from None


@stock_cli.command("set")
@click.argument("code")
@click.option("--date", "day", required=True, callback=_stock_day, help="Local date YYYY-MM-DD.")
@click.option("--packages", type=int, required=True, help="Packages on hand that day.")
@click.option("--per-booking", type=int, default=1, show_default=True, help="Packages per booking.")
def stock_set(code, day, packages, per_booking):
    """Set a market point's stock on a local date (audited)."""
    from slots.stock import set_stock

    try:
        level = set_stock(code, day, packages, per_booking, CLI)
    except DomainError as exc:
        fail(exc)
    click.echo(
        f"{code} {day}: {level.packages} packages, {level.per_booking} per booking, "
        f"{level.reserved} reserved, {level.left} left"
    )


@stock_cli.command("show")
@click.argument("code")
@click.option("--date", "day", required=True, callback=_stock_day, help="Local date YYYY-MM-DD.")
def stock_show(code, day):
    """Print a market point's stock on a local date."""
    from slots.stock import get_stock

    try:
        _, level = get_stock(code, day)
    except DomainError as exc:
        fail(exc)
    click.echo(
        f"{code} {day}: {level.packages} packages, {level.per_booking} per booking, "
        f"{level.reserved} reserved, {level.handed_out} handed out, {level.left} left"
    )

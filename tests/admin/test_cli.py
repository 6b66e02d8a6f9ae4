"""Operator commands, run through Flask's CLI runner on each backend."""

from __future__ import annotations

from sqlalchemy import func, select

from accounts.models import User
from accounts.service import user_for_token
from extensions import db
from slots.models import MarketPoint, Slot


def test_seed_demo_loads_the_jakarta_markets(ctx):
    runner = ctx.test_cli_runner()
    result = runner.invoke(args=["seed-demo", "--days", "2"])
    assert result.exit_code == 0, result.output
    assert "market points: 48 created" in result.output
    assert db.session.scalar(select(func.count(MarketPoint.id))) == 48
    senen = db.session.scalar(select(MarketPoint).where(MarketPoint.code == "JKT-003"))
    assert senen.name == "Pasar Senen Blok III - VI"
    assert senen.kecamatan_code == "317104" and senen.timezone == "Asia/Jakarta"
    # 48 points x 2 days x ten half-hour slots from 07:00 to 12:00
    assert db.session.scalar(select(func.count(Slot.id))) == 48 * 2 * 10
    passwords = [line for line in result.output.splitlines() if "password:" in line]
    assert len(passwords) == 3
    again = runner.invoke(args=["seed-demo", "--days", "2"])
    assert "market points: 0 created, 48 updated" in again.output
    assert "slots: 0 created" in again.output
    assert [line for line in again.output.splitlines() if "password:" in line] == passwords


def test_slots_generate_is_idempotent_and_local(ctx, make_point):
    make_point(code="JKT-910")
    runner = ctx.test_cli_runner()
    args = [
        "slots",
        "generate",
        "jkt-910",
        "--date",
        "2031-01-05",
        "--start",
        "08:00",
        "--end",
        "10:00",
        "--length",
        "30",
        "--capacity",
        "12",
    ]
    first = runner.invoke(args=args)
    assert first.exit_code == 0 and "4 slots created, 0 already existed" in first.output
    second = runner.invoke(args=args)
    assert "0 slots created, 4 already existed" in second.output
    first_slot = db.session.scalar(select(Slot).order_by(Slot.starts_at))
    assert first_slot.starts_at.isoformat() == "2031-01-05T01:00:00+00:00"  # 08:00 WIB
    assert first_slot.capacity == 12
    bad = runner.invoke(args=[*args[:8], "07:00", *args[9:]])
    assert bad.exit_code != 0 and "invalid_slot_range" in bad.output
    unknown = runner.invoke(args=["slots", "generate", "NOPE", *args[3:]])
    assert unknown.exit_code != 0 and "market_point_not_found" in unknown.output


def test_users_create_and_token(ctx, make_point):
    make_point(code="JKT-911")
    runner = ctx.test_cli_runner()
    made = runner.invoke(
        args=[
            "users",
            "create",
            "Gate@Antri.test",
            "--role",
            "staff",
            "--point",
            "JKT-911",
            "--password",
            "long-enough-1",
        ]
    )
    assert made.exit_code == 0 and "gate@antri.test: staff at JKT-911" in made.output
    no_point = runner.invoke(
        args=["users", "create", "x@antri.test", "--role", "staff", "--password", "long-enough-1"]
    )
    assert no_point.exit_code != 0 and "invalid_account" in no_point.output
    short = runner.invoke(
        args=["users", "create", "y@antri.test", "--role", "admin", "--password", "short"]
    )
    assert short.exit_code != 0
    assert db.session.scalar(select(func.count(User.id))) == 1
    token = runner.invoke(args=["users", "token", "gate@antri.test"])
    assert token.exit_code == 0
    last_line = token.output.strip().splitlines()[-1]
    assert last_line.startswith("antri_")
    assert user_for_token(last_line).email == "gate@antri.test"
    assert runner.invoke(args=["users", "token", "nobody@antri.test"]).exit_code != 0


# Every command path and its parameters, as they were before the commands moved into
# the features' cli.py modules (issue 13: CLI commands are public names).
COMMANDS = {
    "audit": [],
    "audit export": ["--action", "--since"],
    # Issue 16: ballot rounds.
    "ballots": [],
    "ballots create": ["code", "--date", "--opens", "--closes"],
    "ballots draw": ["ballot_id"],
    "ballots verify": ["ballot_id"],
    # Issue 17: play a phone conversation without a gateway.
    "channels": [],
    "channels simulate": ["channel", "--from", "--session", "text"],
    "notices": [],
    "notices deliver": ["--limit", "--retry-now"],
    "notices status": [],
    "points": [],
    # Issue 15: stock per market point and day.
    "stock": [],
    "stock set": ["code", "--date", "--packages", "--per-booking"],
    "stock show": ["code", "--date"],
    "points activate": ["code"],
    "points deactivate": ["code"],
    "points export": [],
    "points import": ["path"],
    "points update": [
        "code",
        "--safe-limit",
        "--name",
        "--opens",
        "--closes",
        "--household-limit / --no-household-limit",
    ],
    "schedules": [],
    "schedules create": [
        "code",
        "--weekdays",
        "--start",
        "--end",
        "--length",
        "--capacity",
        "--from",
        "--until",
        "--publish-days-before",
        "--publish-at",
        "--name",
    ],
    "schedules generate": ["schedule_id"],
    "schedules preview": ["schedule_id"],
    "seed-demo": ["--days"],
    "slots": [],
    "slots close": ["slot_id"],
    "slots close-day": ["code", "--date"],
    "slots expire": [],
    "slots generate": ["point_code", "--date", "--start", "--end", "--length", "--capacity"],
    "slots move": ["booking_code", "--to"],
    "slots set-capacity": ["slot_id", "capacity"],
    "tickets": [],
    "tickets keys": [],
    "tickets retire-key": ["kid", "--force"],
    "tickets rotate-key": [],
    "users": [],
    "users create": ["email", "--role", "--point", "--password"],
    "users disable": ["email"],
    "users enable": ["email"],
    "users password": ["email", "--password"],
    "users revoke-token": ["token_id"],
    "users token": ["email", "--name"],
    "users tokens": ["email"],
    "worker": ["--burst"],
}


def test_every_command_keeps_its_path_and_parameters(app):
    found = {}

    def walk(command, path):
        found[" ".join(path)] = [" / ".join(p.opts + p.secondary_opts) for p in command.params]
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    for name, command in app.cli.commands.items():
        if name != "db":  # Flask-Migrate's
            walk(command, [name])
    assert found == COMMANDS

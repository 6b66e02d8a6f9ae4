"""``flask tickets ...``: the ticket signing keys (list, rotate, retire). Each command
is one transaction (``common.cli.CommandGroup``), audited with the actor ``cli``."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import current_app

from common.audit import CLI, record
from common.cli import CommandGroup
from common.timeutil import utcnow
from extensions import db

tickets_cli = CommandGroup("tickets", help="Ticket signing keys.")


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
    click.echo(f"key {kid} retired")

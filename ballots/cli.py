"""``flask ballots``: create, draw and verify ballots at the command line (issue 16),
through the same services as the API, audited with the actor ``cli``."""

from __future__ import annotations

from datetime import datetime

import click

from common.cli import CommandGroup, fail, parse_date
from common.errors import DomainError

ballots_cli = CommandGroup("ballots", help="Ballot rounds: create, draw, verify (issue 16).")


def _instant(_ctx, _param, value: str) -> datetime:
    """An ISO 8601 instant with its UTC offset (``2026-12-05T08:00:00+07:00``)."""
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "use ISO 8601 with an offset, e.g. 2026-12-05T08:00+07:00"
        ) from None
    if instant.tzinfo is None:
        raise click.BadParameter("give the UTC offset, e.g. +07:00")
    return instant


@ballots_cli.command("create")
@click.argument("code")
@click.option("--date", "day", required=True, help="The local date of the slots, YYYY-MM-DD.")
@click.option("--opens", required=True, callback=_instant, help="Window opens (ISO, offset).")
@click.option("--closes", required=True, callback=_instant, help="Window closes (ISO, offset).")
def ballots_create(code, day, opens, closes):
    """Open a ballot over market point CODE's slots on a local date (audited)."""
    from ballots.rounds import create_ballot

    try:
        ballot = create_ballot(code, parse_date(day), opens, closes)
    except DomainError as exc:
        fail(exc)
    click.echo(
        f"ballot {ballot.id}: {code} {ballot.day} places={ballot.places} "
        f"commitment={ballot.commitment}"
    )


@ballots_cli.command("draw")
@click.argument("ballot_id", type=int)
def ballots_draw(ballot_id):
    """Draw a ballot whose window has closed (again: prints the same result)."""
    from ballots.draw import draw_ballot, freeze_ballot
    from common import transactions

    try:
        # The freeze commits first, as the timed job's: its table lock holds back
        # every ballot's entries, so only for the freeze (``ballots.draw.freeze``).
        freeze_ballot(ballot_id)
        transactions.commit()
        proof = draw_ballot(ballot_id)
    except DomainError as exc:
        fail(exc)
    click.echo(
        f"ballot {ballot_id}: {len(proof['order'])} entries, {len(proof['winners'])} won, "
        f"{len(proof['waiting'])} waiting, seed={proof['seed']}"
    )


@ballots_cli.command("verify")
@click.argument("ballot_id", type=int)
def ballots_verify(ballot_id):
    """Recompute a drawn ballot's order and winners from its proof and list alone."""
    from ballots.proof import proof_json, published_list, verify
    from ballots.rounds import get_ballot

    try:
        ballot = get_ballot(ballot_id)
        faults = verify(proof_json(ballot), published_list(ballot))
    except DomainError as exc:
        fail(exc)
    if faults:
        raise click.ClickException("proof FAILS: " + "; ".join(faults))
    click.echo(f"ballot {ballot_id}: proof holds")

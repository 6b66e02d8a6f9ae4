"""``flask channels``: play an SMS, USSD or WhatsApp conversation without a gateway
(issue 17 §5), for training and for trying it on ``make run``."""

from __future__ import annotations

import click

from channels.simulate import SIMULATED, simulate
from common.cli import CommandGroup, fail
from common.errors import DomainError
from common.timeutil import utcnow

channels_cli = CommandGroup("channels", help="Residents' SMS, USSD and WhatsApp channels.")


@channels_cli.command("simulate")
@click.argument("channel", type=click.Choice(SIMULATED))
@click.option("--from", "phone", required=True, help="The resident's phone number.")
@click.option("--session", default="", help="USSD: the session id (a new one if left out).")
@click.argument("text")
def simulate_command(channel, phone, session, text):
    """Send TEXT from --from on CHANNEL and print what the resident reads. For USSD,
    TEXT is the choices so far joined by '*' ("" for the menu), e.g. "1*senen*1*1*1"."""
    try:
        answers = simulate(channel, phone, text, utcnow(), session)
    except DomainError as exc:
        fail(exc)
    for answer in answers:
        click.echo(answer)
    if not answers:
        click.echo("(no reply: over the rate limit, told already)")

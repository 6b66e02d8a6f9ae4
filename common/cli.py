"""What every command line group shares: the one transaction per command, the way a
domain error stops a command, and the parsing of local dates and times.

Each feature keeps its commands in its own ``cli.py`` (``accounts.cli``, ``qr.cli``,
``admin.cli``); the top-level ``cli.register`` adds them to the app. No feature
imports the top-level ``cli`` or ``app``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any, NoReturn

import click
from flask.cli import AppGroup

from common.errors import DomainError
from common.transactions import one_transaction


class CommandGroup(AppGroup):
    """A Flask command group whose every command runs in an app context and in one
    transaction (``common.transactions.one_transaction``): it commits once when the
    command returns, and changes nothing when it fails (``fail``, ``ClickException``,
    any error). Commands so never commit."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable], click.Command]:
        """Like ``AppGroup.command``; the callback is wrapped in one transaction."""
        register = super().command(*args, **kwargs)

        def decorator(func: Callable) -> click.Command:
            return register(one_transaction(func))

        return decorator


def fail(exc: DomainError) -> NoReturn:
    """Stop the command with the domain error's code, message and details (exit code 1,
    ``Error: <code>: <message> <key=value ...>``); the command's transaction rolls back.

    Raises: click.ClickException, always.
    """
    details = " ".join(f"{k}={v}" for k, v in exc.details.items())
    raise click.ClickException(f"{exc.code}: {exc.message} {details}".strip())


def parse_date(value: str) -> date:
    """A local date given as ``YYYY-MM-DD``. Raises click.BadParameter otherwise."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD") from None


def parse_time(value: str) -> time:
    """A local wall-clock time given as ``HH:MM`` (24-hour). Raises click.BadParameter
    otherwise."""
    try:
        return datetime.strptime(value, "%H:%M").time()
    except ValueError:
        raise click.BadParameter("use HH:MM (24-hour)") from None

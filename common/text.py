"""Guards for text that reaches the database: no NUL bytes, no lone surrogates.

PostgreSQL refuses NUL in text and every driver refuses lone UTF-16 surrogates, so such
input must be turned away as bad input (422) before it becomes a database error.
"""

from __future__ import annotations

import re
from typing import Any

from flask_babel import lazy_gettext as _l

from common.errors import ValidationError

_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")


class InvalidCharacters(ValidationError):
    """Input holds a NUL byte or a lone surrogate."""

    code = "invalid_characters"
    default_message = _l("The input contains characters that are not allowed.")


def ensure_clean(value: Any, field: str = "") -> None:
    """Refuse text the database cannot store: a NUL byte or a lone surrogate.

    Args: value, a str, or a list/dict of them, nested (other types pass); field, the
      name of the input field ``value`` is (``""`` for a whole body), from which the
      names of nested fields are made as the API names them (``scans[3].nonce``).
    Raises: InvalidCharacters (422 ``invalid_characters``) whose ``fields`` names the
      faulty field (README, JSON API: "``fields`` names each faulty input field"); a
      bad key is named by the object holding it (``body`` at the top); a bare value
      with no ``field`` (the URL path) names none.
    Rule: PostgreSQL refuses NUL in text, every driver lone surrogates (module doc).
    """
    if isinstance(value, str):
        if _FORBIDDEN.search(value):
            named = {field: InvalidCharacters.default_message} if field else {}
            raise InvalidCharacters(fields=named)
    elif isinstance(value, dict):
        for key, item in value.items():
            ensure_clean(key, field or "body")
            ensure_clean(item, f"{field}.{key}" if field else str(key))
    elif isinstance(value, list):
        for number, item in enumerate(value):
            ensure_clean(item, f"{field}[{number}]")


# What a spreadsheet would take for the start of a formula (CSV/formula injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """Return ``value`` made inert for spreadsheets: a leading ``'`` when it starts
    with ``= + - @``, a tab or a carriage return (OWASP, CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value

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


def ensure_clean(value: Any) -> None:
    """Raise InvalidCharacters when ``value`` (a str, or a list/dict of them, nested)
    holds a NUL byte or a lone surrogate; other types pass."""
    if isinstance(value, str):
        if _FORBIDDEN.search(value):
            raise InvalidCharacters()
    elif isinstance(value, dict):
        for key, item in value.items():
            ensure_clean(key)
            ensure_clean(item)
    elif isinstance(value, list):
        for item in value:
            ensure_clean(item)


# What a spreadsheet would take for the start of a formula (CSV/formula injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """Return ``value`` made inert for spreadsheets: a leading ``'`` when it starts
    with ``= + - @``, a tab or a carriage return (OWASP, CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value

"""A fixed clock for page tests: every loaded module's ``utcnow`` answers one instant.

Modules import ``utcnow`` by name (``from common.timeutil import utcnow``), so the
name is replaced in each module that holds it, for the test only (``monkeypatch``).
An in-process live server sees the same clock: the names are module attributes.
"""

from __future__ import annotations

import sys
from datetime import datetime

import common.timeutil


def freeze(monkeypatch, instant: datetime) -> datetime:
    """Make ``utcnow()`` return the aware ``instant`` everywhere; return it."""
    assert instant.tzinfo is not None, "a fixed clock is an aware instant"
    original = common.timeutil.utcnow
    for module in list(sys.modules.values()):
        # The module's own names only: a module-level __getattr__ may warn.
        if getattr(module, "__dict__", {}).get("utcnow") is original:
            monkeypatch.setattr(module, "utcnow", lambda: instant)
    return instant

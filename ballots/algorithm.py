"""The draw's algorithm, version ``antri-ballot-v1`` (issue 16 §3): pure functions of
published values, so anyone can recompute a draw. ``tools/verify_ballot.py`` is a
stand-alone copy (standard library only); a change here is a new version.

1. Seed and commitment. At creation the server picks ``seed``, 32 random bytes written
   as 64 lower-case hex characters, and publishes ``commitment = SHA-256(seed)``, the
   hash of those 64 ASCII characters, in hex. The seed stays secret until the draw.
2. The list. When the entry window closes the entry list is frozen. Its canonical form
   is one line per entry, sorted by entry code (byte order; codes are upper-case
   ASCII): ``CODE:S1,S2,S3:E\\n`` where ``S1..`` are the preferred slot ids in order
   (decimal) and ``E`` is ``1`` for an entrant aged 60 or more on the ballot's date,
   else ``0``; UTF-8 (ASCII in fact), no header. ``list_hash = SHA-256(list)`` in hex.
   No personal data: an entry code is random and the age flag is one bit.
3. The order. Each entry's key is ``HMAC-SHA256(key=seed, msg=list_hash + ":" + CODE)``
   in hex (the seed's and the message's ASCII bytes); the draw order sorts entries by
   key, then code. Neither the server (committed to the seed before any entry) nor an
   entrant (who cannot know the seed) can steer it.
4. The places. ``places`` maps each slot id to its free places at the draw; ``cap``
   (or null) is how many bookings the day's stock covers. The places given are the
   total places, or ``cap`` when it is smaller; ``elderly_places =
   floor(BALLOT_ELDERLY_SHARE x places given)``. First pass: elderly entries in draw
   order until ``elderly_places`` of them won; second pass: every entry not yet won, in
   draw order (remaining elderly included). An entry wins its first preference with a
   place left, else the next; none left (or the cap reached): it does not win. An entry
   in ``skipped`` (the per-NIK limit refused it at the draw: a booking made elsewhere
   since it entered) never wins and joins no waiting list.
5. The waiting lists. Entries that did not win (and were not skipped) join the waiting
   lists of all their preferences in draw order.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass

ALGORITHM = "antri-ballot-v1"


@dataclass(frozen=True)
class ListedEntry:
    """One line of the published list: entry code, preferred slot ids, elderly flag."""

    code: str
    preferences: tuple[int, ...]
    elderly: bool


def commitment(seed: str) -> str:
    """SHA-256 of the seed's ASCII hex text, in hex (step 1)."""
    return hashlib.sha256(seed.encode("ascii")).hexdigest()


def canonical_list(entries: Iterable[ListedEntry]) -> str:
    """The published list's text (step 2): one line per entry, sorted by code."""
    lines = (
        f"{e.code}:{','.join(str(s) for s in e.preferences)}:{1 if e.elderly else 0}\n"
        for e in sorted(entries, key=lambda e: e.code)
    )
    return "".join(lines)


def list_hash(text: str) -> str:
    """SHA-256 of the list's UTF-8 bytes, in hex (step 2)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def draw_order(seed: str, hashed_list: str, codes: Iterable[str]) -> list[str]:
    """The entry codes in draw order (step 3)."""

    def key(code: str) -> tuple[str, str]:
        msg = f"{hashed_list}:{code}".encode("ascii")
        return hmac.new(seed.encode("ascii"), msg, hashlib.sha256).hexdigest(), code

    return sorted(codes, key=key)


@dataclass(frozen=True)
class Allocation:
    """The draw's outcome: ``winners`` as (code, slot id) in the order they won,
    ``waiting`` the codes that join waiting lists (draw order), ``skipped`` the codes
    the per-NIK limit refused."""

    winners: list[tuple[str, int]]
    waiting: list[str]
    skipped: list[str]


def places_given(places: dict[int, int], cap: int | None) -> int:
    """How many places the draw can give (step 4): the slots' free places (count),
    no more than ``cap``, the bookings the day's stock covers (None: no limit)."""
    total = sum(places.values())
    return total if cap is None else min(total, cap)


def elderly_places(given: int, share: float) -> int:
    """floor(share x places given): the places the elderly go first for (step 4).
    Of the places given, not of the slots': on a day the stock limits, a share of
    the slots' places could take every place there is."""
    return int(given * share + 1e-9)


def allocate(
    order: list[str],
    entries: dict[str, ListedEntry],
    places: dict[int, int],
    cap: int | None,
    elderly_quota: int,
    eligible: Callable[[str, int], bool],
) -> Allocation:
    """Give the places (steps 4 and 5).

    Args: order, codes in draw order; entries by code; places, slot id -> free places
      (count); cap, most winners the stock covers (None: no stock limit); elderly_quota,
      places the elderly go first for; eligible(code, slot id), asked once for an entry
      about to win (False: skipped). Returns: the Allocation.
    """
    left = dict(places)
    won: dict[str, int] = {}
    skipped: list[str] = []
    winners: list[tuple[str, int]] = []

    def try_win(code: str) -> bool:
        if cap is not None and len(winners) >= cap:
            return False
        for slot_id in entries[code].preferences:
            if left.get(slot_id, 0) > 0:
                if not eligible(code, slot_id):
                    skipped.append(code)
                    return False
                left[slot_id] -= 1
                won[code] = slot_id
                winners.append((code, slot_id))
                return True
        return False

    elderly_won = 0
    for code in order:
        if elderly_won >= elderly_quota:
            break
        if entries[code].elderly and try_win(code):
            elderly_won += 1
    for code in order:
        if code not in won and code not in skipped:
            try_win(code)
    waiting = [code for code in order if code not in won and code not in skipped]
    return Allocation(winners, waiting, skipped)

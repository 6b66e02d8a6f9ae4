#!/usr/bin/env python3
"""Verify an Antri ballot draw from its published proof and entry list alone.

Standard library only, no Antri code: anyone can read and run it (issue 16 §3).

Usage:
    python3 verify_ballot.py PROOF LIST
    python3 verify_ballot.py https://antri.example.id/api/v1/ballots/7/proof \\
                             https://antri.example.id/api/v1/ballots/7/list

PROOF is the JSON of ``GET /api/v1/ballots/<id>/proof``, LIST the text of
``GET /api/v1/ballots/<id>/list``, each a file or an http(s) URL. Exit status 0 when
the proof holds, 1 when it fails (the faults are printed), 2 on bad input.

The algorithm ``antri-ballot-v1``:
1. commitment = SHA-256 of the seed's 64 ASCII hex characters, published at creation.
2. The list: one line per entry, sorted by entry code, ``CODE:S1,S2,S3:E`` (preferred
   slot ids in order; E = 1 when the entrant is aged 60+ on the ballot's date), UTF-8;
   list_hash = SHA-256 of the whole text.
3. The order: entries sorted by HMAC-SHA256(key=seed, msg=list_hash + ":" + CODE) in
   hex, then by code.
4. The places (``places``: slot id -> free places at the draw; ``cap``: bookings the
   stock covers, or null): first the elderly, in draw order, until ``elderly_places``
   = floor(elderly_share x places given) of them won (places given: the total
   places, or cap when smaller); then every entry not yet won in
   draw order. An entry wins its first preference with a place left, else the next.
   Entries in ``skipped`` (refused by the per-NIK limit at the draw) never win.
5. Those who did not win (and were not skipped) wait, in draw order (``waiting``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import urllib.request

ALGORITHM = "antri-ballot-v1"


def read(source: str) -> str:
    """The text of a file or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=30) as answer:  # noqa: S310
            return answer.read().decode("utf-8")
    with open(source, encoding="utf-8", newline="") as handle:
        return handle.read()


def parse_list(text: str) -> dict[str, tuple[list[int], bool]]:
    """code -> (preferences, elderly). Raises ValueError on a malformed line."""
    entries = {}
    for line in text.splitlines():
        code, prefs, flag = line.split(":")
        if flag not in ("0", "1") or not code:
            raise ValueError(f"bad line {line!r}")
        entries[code] = ([int(p) for p in prefs.split(",")], flag == "1")
    return entries


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def draw_order(seed: str, list_hash: str, codes) -> list[str]:
    def key(code: str):
        msg = f"{list_hash}:{code}".encode("ascii")
        return hmac.new(seed.encode("ascii"), msg, hashlib.sha256).hexdigest(), code

    return sorted(codes, key=key)


def allocate(order, entries, places, cap, elderly_quota, skipped):
    """Steps 4 and 5: (winners [(code, slot)], waiting [code], skipped [code])."""
    left = dict(places)
    won, winners, skipped_out = {}, [], []

    def try_win(code):
        if cap is not None and len(winners) >= cap:
            return False
        for slot_id in entries[code][0]:
            if left.get(slot_id, 0) > 0:
                if code in skipped:
                    skipped_out.append(code)
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
        if entries[code][1] and try_win(code):
            elderly_won += 1
    for code in order:
        if code not in won and code not in skipped_out:
            try_win(code)
    waiting = [c for c in order if c not in won and c not in skipped_out]
    return winners, waiting, skipped_out


def verify(proof: dict, list_text: str) -> list[str]:
    """The faults of ``proof`` against ``list_text`` (empty: it holds)."""
    if proof.get("algorithm") != ALGORITHM:
        return [f"unknown algorithm {proof.get('algorithm')!r}"]
    seed = proof.get("seed")
    if not seed:
        return ["no seed: the ballot is not drawn yet"]
    faults = []
    if sha256(seed) != proof["commitment"]:
        faults.append("the seed does not match the commitment")
    if sha256(list_text) != proof["list_hash"]:
        faults.append("the list does not match list_hash")
    entries = parse_list(list_text)
    order = draw_order(seed, proof["list_hash"], entries)
    if order != proof["order"]:
        faults.append("the order differs")
    places = {int(k): v for k, v in proof["places"].items()}
    given = sum(places.values())
    if proof["cap"] is not None:
        given = min(given, proof["cap"])
    if proof["elderly_places"] != int(given * proof["elderly_share"] + 1e-9):
        faults.append("elderly_places is not floor(elderly_share x places)")
    winners, waiting, skipped = allocate(
        order, entries, places, proof["cap"], proof["elderly_places"], set(proof["skipped"])
    )
    if [{"entry_code": c, "slot_id": s} for c, s in winners] != proof["winners"]:
        faults.append("the winners differ")
    if waiting != proof["waiting"]:
        faults.append("the waiting order differs")
    if skipped != proof["skipped"]:
        faults.append("the skipped entries differ")
    return faults


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__)
        return 2
    try:
        proof = json.loads(read(argv[1]))
        if not isinstance(proof, dict):
            raise ValueError("the proof is not a JSON object")
        faults = verify(proof, read(argv[2]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"cannot verify: {exc}")
        return 2
    if faults:
        for fault in faults:
            print(f"FAIL: {fault}")
        return 1
    print(f"proof holds: {len(proof['order'])} entries, {len(proof['winners'])} winners")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""What a ballot publishes (issue 16 §3), and its verification: the frozen entry list
(canonical form, ``ballots.algorithm``), the proof, and ``verify``, which recomputes
the draw from those two alone. ``tools/verify_ballot.py`` does the same with the
standard library only, outside Antri.
"""

from __future__ import annotations

import json

from ballots import algorithm
from ballots.draw import as_listed, listed_entries
from ballots.errors import BallotNotClosed
from ballots.models import Ballot


def published_list(ballot: Ballot) -> str:
    """The frozen entry list in its canonical form (``ballots.algorithm`` step 2).

    Raises: BallotNotClosed (409) before the list is frozen (at the draw)."""
    if ballot.frozen_at is None:
        raise BallotNotClosed()
    return algorithm.canonical_list(as_listed(e) for e in listed_entries(ballot))


def proof_json(ballot: Ballot) -> dict:
    """The proof: ``{algorithm, commitment, seed, list_hash, order, winners, ...}``.
    Before the draw, ``seed`` is null (it is secret) and the outcome lists are empty;
    ``list_hash`` is null until the list is frozen."""
    if ballot.proof is not None:
        return json.loads(ballot.proof)
    return {
        "algorithm": ballot.algorithm,
        "commitment": ballot.commitment,
        "seed": None,
        "list_hash": ballot.list_hash,
        "order": [],
        "winners": [],
        "waiting": [],
        "skipped": [],
        "places": {},
        "cap": None,
        "elderly_share": None,
        "elderly_places": None,
    }


def parse_list(text: str) -> dict[str, algorithm.ListedEntry]:
    """Parse a published list (``CODE:S1,S2:E`` lines). Raises ValueError on a bad line."""
    entries = {}
    for line in text.splitlines():
        code, prefs, flag = line.split(":")
        if flag not in ("0", "1") or not code:
            raise ValueError(f"bad line {line!r}")
        entries[code] = algorithm.ListedEntry(
            code, tuple(int(p) for p in prefs.split(",")), flag == "1"
        )
    return entries


def verify(proof: dict, list_text: str) -> list[str]:
    """Recompute a draw from its proof and published list (issue 16 §3).

    Returns: the faults found (empty: the proof holds): the seed does not match the
      commitment, the list does not hash to ``list_hash``, the order, the winners, the
      waiting order or the skipped entries differ from the recomputation.
    """
    faults = []
    seed = proof.get("seed")
    if not seed:
        return ["the proof has no seed: the ballot is not drawn"]
    if proof.get("algorithm") != algorithm.ALGORITHM:
        return [f"unknown algorithm {proof.get('algorithm')!r}"]
    if algorithm.commitment(seed) != proof["commitment"]:
        faults.append("the seed does not match the commitment")
    if algorithm.list_hash(list_text) != proof["list_hash"]:
        faults.append("the list does not match list_hash")
    try:
        entries = parse_list(list_text)
    except ValueError as exc:
        return [*faults, str(exc)]
    order = algorithm.draw_order(seed, proof["list_hash"], entries)
    if order != proof["order"]:
        faults.append("the order differs")
    skipped = set(proof.get("skipped", []))
    places = {int(k): v for k, v in proof["places"].items()}
    outcome = algorithm.allocate(
        order,
        entries,
        places,
        proof["cap"],
        proof["elderly_places"],
        lambda code, _slot: code not in skipped,
    )
    winners = [{"entry_code": c, "slot_id": s} for c, s in outcome.winners]
    if winners != proof["winners"]:
        faults.append("the winners differ")
    if outcome.waiting != proof.get("waiting"):
        faults.append("the waiting order differs")
    if outcome.skipped != proof.get("skipped", []):
        faults.append("the skipped entries differ")
    given = algorithm.places_given(places, proof["cap"])
    if proof["elderly_places"] != algorithm.elderly_places(given, proof["elderly_share"]):
        faults.append("elderly_places is not floor(elderly_share x places)")
    return faults

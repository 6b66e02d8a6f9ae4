"""``/api/v1/ballots`` (issue 16): ballot rounds, entries, results and the proof.

Admins create ballots; anyone reads them, their proof and published list; residents
enter (the booking's validation, rate limits and Idempotency-Key) and look up their
result by entry code and phone.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request
from pydantic import BaseModel

from accounts.auth import api_roles
from accounts.models import ADMIN
from api import bp
from api.schemas import BallotQuery, NewBallot, NewBallotEntry, ResidentLookup
from api.spec import validate
from ballots import entering as ballots_entering
from ballots import proof as ballots_proof
from ballots import rounds as ballots_rounds
from ballots.models import Ballot
from ballots.results import entry_outcome
from common.audit import Actor
from common.db import run_with_retry
from common.limits import (
    booking_ip_limit,
    booking_nik_limit,
    code_budget,
    lookup_ip_limit,
    nik_key,
    no_nik,
)
from extensions import limiter
from slots import codes as slots_codes

# Schemas of the answers -------------------------------------------------------------


class BallotOut(BaseModel):
    """A ballot: its point's code, local ``date``, window (ISO UTC), ``status``
    (scheduled|open|closed|drawn), ``places`` of the day's slots and ``entries`` so
    far (counts), the published ``commitment`` and the ids of its ``slots``."""

    id: int
    market_point: str
    date: str
    opens_at: str
    closes_at: str
    status: str
    places: int
    entries: int
    commitment: str
    algorithm: str


class EntryOut(BaseModel):
    """An entry: its ``entry_code`` and ``status`` (entered|won|waiting|not_drawn);
    ``booking_code`` when won, ``position`` (1 = next) and ``slot_id`` of the best
    waiting place when waiting."""

    entry_code: str
    status: str
    booking_code: str | None = None
    position: int | None = None
    slot_id: int | None = None


class WinnerOut(BaseModel):
    """A winner of the draw and the slot it won."""

    entry_code: str
    slot_id: int


class ProofOut(BaseModel):
    """The proof (issue 16 §3; the algorithm is documented in docs and
    ``ballots/algorithm.py``): ``seed`` is null until the draw."""

    algorithm: str
    commitment: str
    seed: str | None
    list_hash: str | None
    order: list[str]
    winners: list[WinnerOut]
    waiting: list[str]
    skipped: list[str]
    places: dict[str, int]
    cap: int | None
    elderly_share: float | None
    elderly_places: int | None


def ballot_json(ballot: Ballot) -> dict[str, Any]:
    """``BallotOut`` of ``ballot`` now."""
    shown = ballots_rounds.view(ballot)
    return {
        "id": ballot.id,
        "market_point": ballot.market_point.code,
        "date": ballot.day.isoformat(),
        "opens_at": ballot.opens_at.isoformat(),
        "closes_at": ballot.closes_at.isoformat(),
        "status": shown.status,
        "places": ballot.places,
        "entries": shown.entries,
        "commitment": ballot.commitment,
        "algorithm": ballot.algorithm,
    }


# Routes -------------------------------------------------------------------------------


@bp.post("/ballots")
@api_roles(ADMIN)
@validate(404, 409, 413, 422, ok=BallotOut, status=201, auth=True, tags=("ballots",))
def create_ballot(json: NewBallot):
    """Open a ballot over a point-day's slots -> 201 with the ballot. 409
    ``slots_have_bookings``, ``ballot_exists``, ``no_slots``; 422 ``invalid_ballot``
    (window); 404 ``market_point_not_found``. Audited."""

    def create():
        actor = Actor.of(g.api_user, request.remote_addr)
        return ballots_rounds.create_ballot(
            json.market_point, json.date, json.opens_at, json.closes_at, actor
        )

    ballot = run_with_retry(create)
    return jsonify(ballot_json(ballot)), 201


@bp.get("/ballots")
@validate(422, ok=list[BallotOut], tags=("ballots",))
def list_ballots(query: BallotQuery):
    """Ballots, filtered by ``?market_point=`` and ``?date=`` (local date)."""
    found = ballots_rounds.find_ballots(query.market_point or None, query.date)
    return jsonify([ballot_json(ballot) for ballot in found])


@bp.get("/ballots/<int:ballot_id>")
@validate(404, ok=BallotOut, tags=("ballots",))
def get_ballot(ballot_id: int):
    """One ballot; 404 ``ballot_not_found``."""
    return jsonify(ballot_json(ballots_rounds.get_ballot(ballot_id)))


@bp.post("/ballots/<int:ballot_id>/entries")
@limiter.limit(booking_ip_limit)
@limiter.limit(booking_nik_limit, key_func=nik_key, exempt_when=no_nik)
@validate(404, 409, 413, 422, 429, ok=EntryOut, status=201, tags=("ballots",))
def enter_ballot(ballot_id: int, json: NewBallotEntry):
    """Enter a ballot: ``{name, nik, phone, kk?, preferences}`` -> 201 ``{entry_code,
    status: "entered"}``. 409 ``already_entered`` (the NIK, or the family card where
    the point limits households), ``ballot_not_open``, ``limit_reached``; 422 as a
    booking, ``invalid_preferences``. With ``Idempotency-Key`` a repeat returns the
    first entry (``Idempotent-Replayed: true``)."""
    fields = (json.name, json.nik, json.phone, json.preferences)
    options = {"kk": json.kk or "", "language": json.language}
    key = request.headers.get("Idempotency-Key")
    headers = {}
    if key is None:
        entry = ballots_entering.enter_ballot(ballot_id, *fields, **options)
    else:
        request_fields = {
            "ballot_id": ballot_id,
            "name": json.name,
            "nik": json.nik,
            "phone": json.phone,
            "preferences": json.preferences,
        }
        for optional in ("language", "kk"):
            if optional in json.model_fields_set:
                request_fields[optional] = getattr(json, optional)
        fingerprint = slots_codes.request_fingerprint(request_fields)
        entry, replayed = ballots_entering.enter_ballot_once(
            key, fingerprint, ballot_id, *fields, **options
        )
        headers["Idempotent-Replayed"] = "true" if replayed else "false"
    return jsonify({"entry_code": entry.code, "status": entry.status}), 201, headers


@bp.get("/ballots/<int:ballot_id>/entries/<code>")
@limiter.limit(lookup_ip_limit)
@code_budget()
@validate(404, 422, 429, ok=EntryOut, tags=("ballots",))
def get_entry(ballot_id: int, code: str, query: ResidentLookup):
    """An entry's status by entry code and ``?phone=``; one 404 ``entry_not_found``
    for any mismatch."""
    entry = ballots_entering.find_entry(ballot_id, code, query.phone)
    outcome = entry_outcome(entry)
    return jsonify(
        {
            "entry_code": entry.code,
            "status": outcome.status,
            "booking_code": outcome.booking_code,
            "position": outcome.position,
            "slot_id": outcome.slot_id,
        }
    )


@bp.get("/ballots/<int:ballot_id>/proof")
@validate(404, ok=ProofOut, tags=("ballots",))
def get_proof(ballot_id: int):
    """The ballot's proof: commitment from creation; seed, order and winners once
    drawn (null / empty before)."""
    return jsonify(ballots_proof.proof_json(ballots_rounds.get_ballot(ballot_id)))


@bp.get("/ballots/<int:ballot_id>/list")
@validate(404, 409, ok=None, media="text/plain", tags=("ballots",))
def get_list(ballot_id: int):
    """The frozen entry list in its canonical form (``CODE:S1,S2:E`` lines, sorted by
    code; its SHA-256 is the proof's ``list_hash``); 409 ``ballot_not_closed`` before
    the list is frozen."""
    text = ballots_proof.published_list(ballots_rounds.get_ballot(ballot_id))
    return Response(text, mimetype="text/plain", headers={"Cache-Control": "no-cache"})

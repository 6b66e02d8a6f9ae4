"""The resident's ballot page (issue 16): the window, entries and places, the entry
form (no JavaScript needed), then the proof and a form to see one's result by entry
code and phone. Thin: the services of ``ballots`` do the work."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from ballots import entering as ballots_entering
from ballots import proof as ballots_proof
from ballots import rounds as ballots_rounds
from ballots.results import entry_outcome
from common.errors import DomainError
from common.limits import (
    booking_ip_limit,
    booking_nik_limit,
    code_budget,
    lookup_ip_limit,
    nik_key,
    no_nik,
)
from extensions import db, limiter
from slots.codes import booking_access_key

bp = Blueprint("ballots", __name__)


def _render(ballot_id: int, status: int = 200, **extra):
    """The ballot page with ``extra`` (an error, an entry just made, a result)."""
    ballot = ballots_rounds.get_ballot(ballot_id)
    shown = ballots_rounds.view(ballot)
    page = render_template(
        "ballots/ballot.html",
        ballot=ballot,
        shown=shown,
        slots=ballots_rounds.ballot_slots(ballot),
        proof=ballots_proof.proof_json(ballot),
        form=request.form if request.method == "POST" else {},
        **extra,
    )
    return page, status, {"Cache-Control": "no-store"}


@bp.get("/ballots/<int:ballot_id>")
def page(ballot_id: int):
    """A ballot's public page; ``?entered=CODE`` (where an entry lands, after the
    redirect) shows that entry's code. Entry codes are public (the list, the proof),
    so showing one tells nothing the page does not."""
    code = request.args.get("entered", "")
    entered = ballots_entering.entry_by_code(ballot_id, code) if code else None
    return _render(ballot_id, entered=entered)


@bp.post("/ballots/<int:ballot_id>/enter")
@limiter.limit(booking_ip_limit)
@limiter.limit(booking_nik_limit, key_func=nik_key, exempt_when=no_nik)
def enter(ballot_id: int):
    """The entry form's submission: the entry code, or why not."""
    wanted = []
    for name in ("first", "second", "third"):
        raw = request.form.get(name, "")
        if raw.isdigit() and int(raw) not in wanted:
            wanted.append(int(raw))
    try:
        entry = ballots_entering.enter_ballot(
            ballot_id,
            request.form.get("name", ""),
            request.form.get("nik", ""),
            request.form.get("phone", ""),
            wanted,
            kk=request.form.get("kk", ""),
            language=_language(),
        )
    except DomainError as exc:
        db.session.rollback()
        return _render(ballot_id, exc.status, error=exc)
    # Post/redirect/get: reloading the page shows the code again instead of posting
    # the entry a second time (which would answer already_entered).
    return redirect(url_for("ballots.page", ballot_id=ballot_id, entered=entry.code), 303)


@bp.post("/ballots/<int:ballot_id>/result")
@limiter.limit(lookup_ip_limit)
# Entry codes are public (the list, the proof): the phone is the secret, so the form
# shares the code's one look-up budget with the API (issue 14 item 2).
@code_budget()
def result(ballot_id: int):
    """The result form: one entry's outcome by its code and phone."""
    try:
        entry = ballots_entering.find_entry(
            ballot_id, request.form.get("code", ""), request.form.get("phone", "")
        )
    except DomainError as exc:
        return _render(ballot_id, exc.status, error=exc)
    outcome = entry_outcome(entry)
    # A winner asked with the right phone gets the ticket itself (its capability link,
    # as the booking's messages carry), not only the booking's code.
    ticket = (
        url_for(
            "qr.ticket", code=outcome.booking_code, key=booking_access_key(outcome.booking_code)
        )
        if outcome.booking_code
        else None
    )
    return _render(ballot_id, looked_up=entry, outcome=outcome, ticket=ticket)


def _language() -> str:
    """The page's language as a message language ("id" or "en")."""
    from flask_babel import get_locale

    return "en" if str(get_locale()).startswith("en") else "id"

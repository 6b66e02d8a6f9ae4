"""The staff page that plays a conversation (issue 17 §5): a point trains its staff,
a developer tries the channels on ``make run``, without any gateway."""

from __future__ import annotations

import re

from flask import render_template, request, session
from flask_babel import gettext as _

from accounts.auth import page_roles
from accounts.models import ADMIN, STAFF, SUPERVISOR
from channels import bp
from channels.simulate import SIMULATED, simulate
from common.errors import DomainError
from common.timeutil import utcnow

TRANSCRIPT_KEY = "channels_transcript"
MAX_LINES = 30
# A NIK typed in a message (16 digits, maybe with dots or spaces between groups).
_NIK = re.compile(r"(?<!\d)(?:\d[ .]?){12}(\d{4})(?!\d)")


def masked(text: str) -> str:
    """``text`` with every NIK in it shown as ``****`` and its last four digits: the
    transcript lives in the session cookie (signed, not encrypted) and on the page,
    and a full NIK is never shown back (DESIGN.md privacy)."""
    return _NIK.sub(lambda match: "****" + match.group(1), text)


@bp.route("/simulate", methods=["GET", "POST"])
@page_roles(ADMIN, SUPERVISOR, STAFF)
def simulate_page():
    """Send a message as a resident would and show the conversation so far."""
    transcript = session.get(TRANSCRIPT_KEY, [])
    form = {
        "channel": request.form.get("channel", "sms"),
        "phone": request.form.get("phone", ""),
        "text": request.form.get("text", ""),
        "session": request.form.get("session", ""),
    }
    error = ""
    if request.method == "POST":
        if request.form.get("clear"):
            transcript = []
        elif form["channel"] not in SIMULATED:
            error = _("Choose SMS, USSD or WhatsApp.")
        else:
            try:
                answers = simulate(
                    form["channel"], form["phone"], form["text"], utcnow(), form["session"]
                )
            except DomainError as exc:
                error = str(exc.message)
            else:
                transcript = transcript + [
                    {"who": "resident", "channel": form["channel"], "text": masked(form["text"])}
                ]
                transcript += [
                    {"who": "antri", "channel": form["channel"], "text": masked(a)} for a in answers
                ]
        session[TRANSCRIPT_KEY] = transcript[-MAX_LINES:]
    return render_template(
        "channels/simulate.html",
        transcript=transcript,
        form=form,
        channels=SIMULATED,
        error=error,
    )

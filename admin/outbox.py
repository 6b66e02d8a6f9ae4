"""Admin pages of the outbox of messages to residents, and the admin's start page."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm

from accounts.auth import page_roles
from accounts.models import ADMIN
from admin import bp
from admin.pages import actor
from channels.counts import bookings_per_channel
from common.timeutil import utcnow
from notify.outbox import failed_notices, outbox_counts, retry_now


@bp.get("/")
@page_roles(ADMIN)
def home():
    """The admin's start page: what there is to run, and the bookings per channel."""
    return render_template(
        "admin/home.html", counts=outbox_counts(), per_channel=bookings_per_channel(utcnow())
    )


@bp.get("/notices")
@page_roles(ADMIN)
def notices():
    """The outbox: counts per status and every message that failed, with its error."""
    return render_template(
        "admin/notices.html",
        counts=outbox_counts(),
        failed=failed_notices(),
        form=FlaskForm(),
    )


@bp.post("/notices/retry")
@page_roles(ADMIN)
def retry_notices():
    """Make failed notices (and those waiting out a back-off) due again, now."""
    form = FlaskForm()
    if form.validate_on_submit():
        count = retry_now(actor=actor())
        flash(_("%(count)d messages will be sent again.", count=count), "ok")
    return redirect(url_for("admin.notices"))

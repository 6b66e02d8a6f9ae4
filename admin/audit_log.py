"""Admin pages of the audit log: filtered list and CSV."""

from __future__ import annotations

from flask import Response, current_app, render_template, request

from accounts.auth import page_roles
from accounts.models import ADMIN
from admin import bp
from admin.forms import AuditFilterForm
from common import audit
from common.timeutil import local_day_bounds


def _audit_entries(form: AuditFilterForm, limit: int) -> list[audit.AuditEntry]:
    tz = current_app.config["DEFAULT_TIMEZONE"]
    since = local_day_bounds(form.since.data, tz)[0] if form.since.data else None
    until = local_day_bounds(form.until.data, tz)[1] if form.until.data else None
    return audit.search(
        action=(form.action.data or "").strip(),
        actor=(form.actor.data or "").strip(),
        since=since,
        until=until,
        limit=limit,
    )


@bp.get("/audit")
@page_roles(ADMIN)
def audit_log():
    """The audit log, newest first, filtered by action, actor and local dates."""
    form = AuditFilterForm(request.args)
    entries = _audit_entries(form, 500) if form.validate() else []
    return render_template(
        "admin/audit.html", form=form, entries=entries, tz=current_app.config["DEFAULT_TIMEZONE"]
    )


@bp.get("/audit.csv")
@page_roles(ADMIN)
def audit_csv():
    """The filtered audit log as CSV (UTF-8 with BOM, instants in UTC)."""
    form = AuditFilterForm(request.args)
    entries = _audit_entries(form, 100_000) if form.validate() else []
    return Response(
        "\ufeff" + audit.to_csv(entries),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=antri-audit.csv"},
    )

"""Staff gate page and supervisor overview."""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask import Response, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_translations
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from accounts.auth import page_roles
from accounts.models import ADMIN, STAFF, SUPERVISOR
from checkin import bp, charts, conflicts, live, occupancy, scanning
from checkin.errors import CONFLICT_LABELS, REFUSALS
from checkin.forms import ScanForm
from common.errors import ValidationError
from common.timeutil import local_date, parse_day, utcnow
from extensions import db
from slots.models import MarketPoint
from slots.points import get_market_point
from slots.stock import stock_level


def _gate_point() -> MarketPoint | None:
    """Staff: their own point. Supervisors and admins: the ``?point=`` they chose."""
    if current_user.role == STAFF:
        return current_user.market_point
    code = request.args.get("point")
    return get_market_point(code) if code else None


def _gate_config(point: MarketPoint) -> dict:
    """What the gate page's script needs: its URLs, and every word it may show,
    translated here (the script holds no UI text of its own)."""
    vendor = url_for("static", filename="vendor/")
    return {
        "marketPoint": point.code,
        "me": current_user.email,
        "checkinUrl": url_for("api.checkin"),
        "checkoutUrl": url_for("api.checkout"),
        "syncUrl": url_for("api.gate_sync", market_point=point.code),
        "batchUrl": url_for("api.checkin_sync"),
        "vendorUrl": vendor,
        "zxingUrl": vendor + "zxing-reader.js",
        "workerUrl": url_for("checkin.gate_worker"),
        "workerScope": url_for("checkin.gate"),
        "workerCache": GATE_CACHE,
        "words": {
            "admitted": _("ADMIT"),
            "refused": _("REFUSE"),
            "wait": _("WAIT"),
            "checked_out": _("CHECKED OUT"),
        },
        "messages": {code: str(message) for code, message in REFUSALS.items()},
        "text": {
            "offline": _("Offline: %(count)s scans waiting to sync", count="%(count)s"),
            "waiting": _("%(count)s scans waiting to sync", count="%(count)s"),
            "admitted_offline": _("Valid ticket (checked offline; it syncs later)."),
            "refused": _("Refused."),
            "empty": _("Nothing was scanned. Scan the QR code or type the booking code."),
            "no_camera": _("The camera is not available. Use the scanner or type the code."),
            "camera_start": _("Scan with the camera"),
            "camera_stop": _("Stop the camera"),
            # The packages to hand over on an admission (issue 15), singular and plural.
            # Unformatted (the script fills %(num)s), so the catalogue's own ngettext.
            "handout_one": get_translations().ngettext(
                "Hand over %(num)s package", "Hand over %(num)s packages", 1
            ),
            "handout_other": get_translations().ngettext(
                "Hand over %(num)s package", "Hand over %(num)s packages", 2
            ),
            # An admission collected by a proxy (issue 15 part 3).
            "proxy_check": _("check ID card"),
            "proxy_label": _("Collected by a proxy"),
        },
    }


# The gate service worker's cache; a new name when the cached files change shape.
# v3: gate.js shows the handout and the proxy (issue 15).
GATE_CACHE = "antri-gate-v3"


@bp.get("/gate-sw.js")
def gate_worker():
    """The gate's service worker: keeps the gate page and its scripts for offline use."""
    assets = [
        url_for("static", filename=name)
        for name in (
            "gate/gate.js",
            "gate/ticket.js",
            "gate/window.js",
            "vendor/noble-ed25519.js",
            "vendor/zxing-reader.js",
            "vendor/zxing_reader.wasm",
        )
    ]
    response = Response(render_template("checkin/gate-sw.js", assets=assets, cache=GATE_CACHE))
    response.mimetype = "text/javascript"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route("/gate", methods=["GET", "POST"])
@page_roles(STAFF, SUPERVISOR, ADMIN)
def gate():
    """Scan tickets at one market point's gate; shows admit or refuse, and inside now."""
    point = _gate_point()
    if point is None:
        points = db.session.scalars(
            select(MarketPoint).where(MarketPoint.active.is_(True)).order_by(MarketPoint.name)
        )
        return render_template("checkin/choose_point.html", points=list(points))
    form = ScanForm()
    result = None
    if form.validate_on_submit():
        scanned = (form.scan.data or "").strip("\r\n\t")
        if scanned.strip():
            scan = scanning.check_out if form.direction.data == "out" else scanning.check_in
            # The form's per-render nonce makes a resent form (a reload, a double tap)
            # one scan, answered the same.
            result = scan(
                scanned, point, current_user, device="gate-page", nonce=form.nonce.data or None
            )
        else:  # a stray Enter from a scanner: stay on the gate, ready
            flash(_("Nothing was scanned. Scan the QR code or type the booking code."), "error")
        form.scan.data = ""
    form.nonce.data = uuid.uuid4().hex
    inside = occupancy.inside_now([point.id])[point.id]
    return render_template(
        "checkin/gate.html",
        point=point,
        form=form,
        result=result,
        inside=inside,
        gate_config=_gate_config(point),
    )


# Sort keys of the overview: (row value, largest first?). Fullest first by default:
# the points that may need a held gate come to the top.
SORTS = {
    "fullness": (lambda r: r["inside_now"] / r["safe_limit"], True),
    "name": (lambda r: r["market_point"]["name"].lower(), False),
    "city": (lambda r: (r["market_point"]["city"], r["market_point"]["kecamatan"]), False),
    "booked": (lambda r: r["booked_today"], True),
    "checked_in": (lambda r: r["checked_in_today"], True),
    "no_show": (lambda r: r["no_show_today"], True),
    "waiting": (lambda r: r["waiting_today"], True),
}


# The sort menu (narrow screens hide the table's head, and with it the sort links).
SORT_LABELS = (
    ("fullness", _l("Inside now")),
    ("name", _l("Market point")),
    ("city", _l("City")),
    ("booked", _l("Booked today")),
    ("checked_in", _l("Checked in today")),
    ("no_show", _l("No-show")),
    ("waiting", _l("Waiting")),
)


def _live_urls(code: str | None = None) -> dict:
    """The stream URL (None without Redis: the page polls instead) and the poll URL."""
    args = {"market_point": code} if code else {}
    has_hub = live.HUB in current_app.extensions
    return {
        "stream_url": url_for("api.occupancy_stream", **args) if has_hub else None,
        "poll_url": url_for("api.occupancy_overview", **args),
        "poll_seconds": current_app.config["LIVE_POLL_SECONDS"],
        "refresh_seconds": current_app.config["LIVE_REFRESH_SECONDS"],
    }


@bp.get("/supervisor")
@page_roles(SUPERVISOR, ADMIN)
def supervisor():
    """Every market point: inside now against its safe limit, today's counts, alerts;
    ``?city=``, ``?kecamatan=`` filter, ``?sort=`` orders (SORTS)."""
    now = utcnow()
    everywhere = occupancy.active_points()
    city = request.args.get("city", "")
    kecamatan = request.args.get("kecamatan", "")
    sort = request.args.get("sort", "fullness")
    sort = sort if sort in SORTS else "fullness"
    points = [
        p
        for p in everywhere
        if (not city or p.city == city) and (not kecamatan or p.kecamatan == kecamatan)
    ]
    rows = occupancy.overview(now, points)
    key, largest_first = SORTS[sort]
    rows.sort(key=key, reverse=largest_first)
    cities = sorted({p.city for p in everywhere if p.city})
    kecamatans = sorted({p.kecamatan for p in everywhere if p.kecamatan and p.city == city})
    if not city:
        kecamatans = sorted({p.kecamatan for p in everywhere if p.kecamatan})
    return render_template(
        "checkin/supervisor.html",
        rows=rows,
        stats=occupancy.slot_stats(points, now),
        timezones={p.id: p.timezone for p in points},
        now=now,
        city=city,
        kecamatan=kecamatan,
        sort=sort,
        sort_labels=SORT_LABELS,
        cities=cities,
        kecamatans=kecamatans,
        today=local_date(now, current_app.config["DEFAULT_TIMEZONE"]),
        **_live_urls(),
    )


@bp.post("/supervisor/conflicts/<int:conflict_id>/resolve")
@page_roles(SUPERVISOR, ADMIN)
def resolve_conflict(conflict_id: int):
    """Mark a gate conflict as dealt with (after checking the booking with the gate)."""
    if FlaskForm().validate_on_submit():
        conflict = conflicts.resolve_conflict(conflict_id, current_user)
        flash(_("Conflict marked as dealt with."), "ok")
        return redirect(
            url_for("checkin.point_detail", code=conflict.market_point.code) + "#conflicts"
        )
    return redirect(url_for("checkin.supervisor"))


@bp.get("/supervisor/points/<code>")
@page_roles(SUPERVISOR, ADMIN)
def point_detail(code: str):
    """One point's day (``?date=YYYY-MM-DD``, default today): slots with counts,
    arrivals per arrival wave against bookings told to come then (issue 15), people
    inside over the day."""
    point = get_market_point(code)
    now = utcnow()
    raw = request.args.get("date")
    try:
        day = parse_day(raw) if raw else local_date(now, point.timezone)
    except ValueError:
        raise ValidationError(_("The date is not valid."), code="invalid_date", status=400)
    point_day = occupancy.point_day(point, day, now)
    row = occupancy.overview(now, [point])[0]
    # The shown day's stock (issue 15): today's is the overview row's, kept live.
    level = stock_level(point, day)
    day_stock = None
    if level is not None:
        day_stock = {**level.as_json(), "nearly_sold_out": level.nearly_sold_out}
    return render_template(
        "checkin/point.html",
        point=point,
        day=point_day,
        row=row,
        day_stock=day_stock,
        # Unresolved conflicts of any day, and what was resolved this past week.
        gate_conflicts=conflicts.conflicts(point, now - timedelta(days=7))
        + conflicts.unresolved_before(point, now - timedelta(days=7)),
        resolve_form=FlaskForm(),
        conflict_labels=CONFLICT_LABELS,
        today=local_date(now, point.timezone),
        arrivals=charts.arrivals_chart(point_day),
        inside_chart=charts.inside_chart(point_day),
        now=now,
        # Only today moves; another day's page is a still picture.
        **(_live_urls(point.code) if day == local_date(now, point.timezone) else {}),
    )

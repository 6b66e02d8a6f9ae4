"""Resident ticket pages: the ticket with its QR code, look-up, cancel."""

from __future__ import annotations

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from common.db import run_with_retry
from common.errors import DomainError
from common.limits import code_budget, code_key, lookup_code_limit, lookup_ip_limit
from common.links import public_url
from extensions import db, limiter
from qr import bp, printable
from qr.forms import CancelForm, LookupForm, ProxyForm, RemoveProxyForm
from qr.printable import TicketFacts
from qr.render import qr_png, qr_svg
from qr.service import issue_ticket
from slots.availability import slot_local_times
from slots.booking import can_cancel, cancel_booking, find_booking, get_booking_for_resident
from slots.codes import booking_access_key, check_access_key, match_phone, waiting_access_key
from slots.errors import BookingNotFound
from slots.models import ACTIVE_STATUSES, Booking
from slots.proxy import proxy_faults, proxy_summary, remove_proxy, set_proxy
from slots.waiting import get_waiting_entry_for_resident


def _booking_from_url(code: str, key: str, usable: bool = False) -> Booking:
    """Return the booking of a ticket capability URL, or 404 for any mismatch; with
    ``usable``, 410 when it can no longer be used at the gate (no QR for it)."""
    booking = find_booking(code)
    if booking is None or not check_access_key(booking.code, key):
        abort(404)
    if usable and booking.status not in ("confirmed", "checked_in"):
        abort(410)
    return booking


@bp.get("/tickets/<code>/<key>")
def ticket(code: str, key: str):
    """The ticket: QR code, booking code, market point and local slot time."""
    return _ticket_page(_booking_from_url(code, key), key)


def _ticket_page(
    booking: Booking,
    key: str,
    proxy_form: ProxyForm | None = None,
    remove_form: RemoveProxyForm | None = None,
    faults: dict[str, DomainError] | None = None,
    error: DomainError | None = None,
    status: int = 200,
) -> Response:
    """Render the ticket page; with a proxy form sent back, its faults beside its fields
    (``faults``: {field name: error}) or a refusal above it (``error``)."""
    start, end = slot_local_times(booking.slot)
    faults = faults or {}
    response = Response(
        render_template(
            "qr/ticket.html",
            booking=booking,
            key=key,
            start=start,
            end=end,
            token=issue_ticket(booking),
            can_cancel=can_cancel(booking),
            share_text=_(
                "My Antri ticket %(code)s: %(url)s",
                code=booking.code,
                url=public_url("qr.ticket", code=booking.code, key=key),
            ),
            cancel_cutoff=current_app.config["CANCEL_CUTOFF_MINUTES"],
            new=request.args.get("new") == "1",
            # A cancelled or no-show booking is collected by nobody: its proxy is not
            # shown as if they still could.
            proxy=proxy_summary(booking.id) if booking.status in ACTIVE_STATUSES else None,
            proxy_form=proxy_form or ProxyForm(formdata=None),
            remove_form=remove_form or RemoveProxyForm(formdata=None, prefix="remove"),
            proxy_limit=current_app.config["PROXY_LIMIT_PER_DAY"],
            faults=faults,
            first_fault=next(iter(faults), None),
            proxy_error=error,
        ),
        status=status,
    )
    # The URL is the ticket's key: keep it out of shared caches and referrers.
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _facts(booking: Booking, key: str) -> TicketFacts:
    start, end = slot_local_times(booking.slot)
    point = booking.slot.market_point
    return TicketFacts(
        code=booking.code,
        token=issue_ticket(booking),
        name=booking.name,
        nik_last4=booking.nik_last4,
        point_name=point.name,
        point_address=point.address,
        starts_at=start,
        ends_at=end,
        ticket_url=public_url("qr.ticket", code=booking.code, key=key),
        arrive_at=booking.arrive_at.astimezone(start.tzinfo),
    )


def _download(data: bytes, mimetype: str, filename: str) -> Response:
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/tickets/<code>/<key>/ticket.pdf")
@limiter.limit(lookup_ip_limit)
@limiter.limit(lookup_code_limit, key_func=code_key)
def ticket_pdf(code: str, key: str):
    """The printable ticket as an A5 PDF."""
    booking = _booking_from_url(code, key, usable=True)
    labels = {
        "title": _("Antri ticket"),
        "code": _("Booking code"),
        "when": _("Time"),
        "arrive": _("Arrive at %(time)s", time="%(time)s"),
        "name": _("Name"),
        "show": _("Show the QR code at the gate. If it cannot be scanned, say the booking code."),
        "keep": _("One ticket admits one person, once."),
    }
    pdf = printable.ticket_pdf(_facts(booking, key), labels)
    return _download(pdf, "application/pdf", f"antri-{booking.code}.pdf")


@bp.get("/tickets/<code>/<key>/ticket.ics")
def ticket_ics(code: str, key: str):
    """The slot as a calendar event (times in UTC)."""
    booking = _booking_from_url(code, key, usable=True)
    facts = _facts(booking, key)
    summary = _("Pick-up at %(point)s (Antri %(code)s)", point=facts.point_name, code=booking.code)
    ics = printable.ticket_ics(facts, summary, facts.ticket_url)
    return _download(ics, "text/calendar", f"antri-{booking.code}.ics")


@bp.get("/tickets/<code>/<key>/qr.svg")
def ticket_qr_svg(code: str, key: str):
    """The ticket's QR code as SVG."""
    booking = _booking_from_url(code, key, usable=True)
    response = Response(qr_svg(issue_ticket(booking)), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@bp.get("/sw.js")
def service_worker():
    """The service worker that keeps opened tickets readable offline."""
    response = Response(render_template("qr/sw.js"), mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/tickets/<code>/<key>/qr.png")
def ticket_qr(code: str, key: str):
    """The ticket's QR code as a PNG image."""
    booking = _booking_from_url(code, key, usable=True)
    response = Response(qr_png(issue_ticket(booking)), mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@bp.route("/tickets/lookup", methods=["GET", "POST"])
@limiter.limit(lookup_ip_limit, methods=["POST"])
@code_budget(methods=["POST"])
def lookup():
    """Find a ticket again with its booking code and phone number."""
    form = LookupForm()
    error = None
    status = 200
    if form.validate_on_submit():
        code, phone = form.code.data or "", form.phone.data or ""
        try:
            booking = get_booking_for_resident(code, phone)
        except DomainError as exc:
            # A waiting-list code is looked up here too: residents keep one code.
            try:
                entry = get_waiting_entry_for_resident(code, phone)
            except DomainError:
                error, status = exc, exc.status
            else:
                key = waiting_access_key(entry.code)
                return redirect(url_for("slots.waiting", code=entry.code, key=key))
        else:
            key = booking_access_key(booking.code)
            return redirect(url_for("qr.ticket", code=booking.code, key=key))
    elif request.method == "POST":
        status = 400
    return render_template("qr/lookup.html", form=form, error=error), status


def _cancel_page(booking: Booking, key: str) -> Response:
    """The confirmation page of a cancel: what is cancelled, yes or keep it."""
    start, end = slot_local_times(booking.slot)
    response = Response(
        render_template(
            "qr/cancel.html",
            booking=booking,
            key=key,
            start=start,
            end=end,
            cancel_form=CancelForm(),
        )
    )
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.route("/tickets/<code>/<key>/cancel", methods=["GET", "POST"])
def cancel(code: str, key: str):
    """Cancel the booking of this ticket in two steps: GET asks, POST with
    ``confirm=yes`` (sent only by the page that asks) cancels (issue 14 item 11)."""
    booking = _booking_from_url(code, key)
    ticket_url = url_for("qr.ticket", code=booking.code, key=key)
    if request.method == "GET":
        if not can_cancel(booking):  # the ticket page says why
            return redirect(ticket_url)
        return _cancel_page(booking, key)
    form = CancelForm()
    if not form.validate_on_submit():
        abort(400)
    if request.form.get("confirm") != "yes":  # one tap from elsewhere: ask first
        return redirect(url_for("qr.cancel", code=booking.code, key=key), 303)

    def cancel() -> None:
        cancel_booking(find_booking(booking.code))

    try:
        # Promotions may deadlock with another cancellation: a deadlock is met by a
        # statement (the locks are taken there), so the retry need not hold the commit,
        # which the request's wrapper makes once (common.transactions.run_view).
        run_with_retry(cancel)
    except DomainError as exc:
        db.session.rollback()
        flash(str(exc.message), "error")
    else:
        flash(_("Your booking is cancelled. Your place is free for someone else."), "ok")
    return redirect(ticket_url)


# The proxy form's field each field-level refusal is about (issue 14 item 8's way).
PROXY_FIELD_OF_CODE = {
    "invalid_name": "proxy_name",
    "invalid_nik": "proxy_nik",
    "proxy_is_resident": "proxy_nik",
    "booking_not_found": "phone",
}


def _wrong_phone() -> BookingNotFound:
    """The ticket page's words for a phone that is not the booking's."""
    return BookingNotFound(_("This is not the phone number this booking was made with."))


@bp.post("/tickets/<code>/<key>/proxy")
@limiter.limit(lookup_ip_limit)
@code_budget()
def set_ticket_proxy(code: str, key: str):
    """Name (or replace) the person who collects this booking: "Diambil oleh orang
    lain" (issue 15 part 3); the booking's phone proves it is the resident's."""
    booking = _booking_from_url(code, key)
    form = ProxyForm()
    if not form.validate_on_submit():
        abort(400)
    name, nik, phone = form.proxy_name.data or "", form.proxy_nik.data or "", form.phone.data or ""
    faults: dict[str, DomainError] = dict(proxy_faults(name, nik))
    try:
        match_phone(booking, phone, BookingNotFound)
    except DomainError:
        faults["phone"] = _wrong_phone()
    error = None
    if not faults:
        try:
            set_proxy(booking, name, nik)
        except DomainError as exc:
            db.session.rollback()
            field = PROXY_FIELD_OF_CODE.get(exc.code)
            faults, error = ({field: exc}, None) if field else ({}, exc)
        else:  # the request's one commit follows (common.transactions.run_view)
            flash(
                _("%(name)s may now collect for you, showing their KTP.", name=name.strip()), "ok"
            )
            return redirect(url_for("qr.ticket", code=booking.code, key=key) + "#proxy", 303)
    for field in faults:  # what was wrong goes back empty (issue 14 item 7)
        form[field].data = ""
    booking = _booking_from_url(code, key)
    status = (error or next(iter(faults.values()))).status
    return _ticket_page(booking, key, proxy_form=form, faults=faults, error=error, status=status)


@bp.post("/tickets/<code>/<key>/proxy/remove")
@limiter.limit(lookup_ip_limit)
@code_budget()
def remove_ticket_proxy(code: str, key: str):
    """Remove the booking's proxy: only the resident collects again."""
    booking = _booking_from_url(code, key)
    form = RemoveProxyForm(prefix="remove")
    if not form.validate_on_submit():
        abort(400)
    try:
        match_phone(booking, form.phone.data or "", BookingNotFound)
    except DomainError:
        wrong = {"remove-phone": _wrong_phone()}
        form.phone.data = ""
        return _ticket_page(booking, key, remove_form=form, faults=wrong, status=404)
    try:
        remove_proxy(booking)
    except DomainError as exc:
        db.session.rollback()
        booking = _booking_from_url(code, key)
        return _ticket_page(booking, key, error=exc, status=exc.status)
    flash(_("The proxy is removed. Only you can collect this booking."), "ok")
    return redirect(url_for("qr.ticket", code=booking.code, key=key) + "#proxy", 303)

"""``/api/v1/occupancy``: how many people are inside each point, now and today,
polled or streamed live (Server-Sent Events)."""

from __future__ import annotations

import logging

from flask import Response, current_app, g, jsonify, request

from accounts.auth import api_or_page_roles, api_roles
from accounts.models import ADMIN, STAFF, SUPERVISOR, User
from accounts.service import user_for_token
from api import bp
from api.access import visible_points
from api.responses import OccupancyOut, OverviewOut
from api.schemas import GateQuery
from api.spec import validate
from checkin import live
from checkin import occupancy as checkin_occupancy
from common.errors import DomainError
from extensions import db

log = logging.getLogger("antri.api")


@bp.get("/occupancy")
@api_roles(SUPERVISOR, ADMIN)
@validate(ok=list[OccupancyOut], auth=True, tags=("occupancy",))
def occupancy():
    """Every active point: inside now, safe limit, booked and checked in today."""
    return jsonify(checkin_occupancy.occupancy())


class LiveUnavailable(DomainError):
    """The live feed needs Redis, and Redis is not configured or not answering, or
    this process (or this account) has its maximum of streams open."""

    code = "live_unavailable"
    status = 503
    default_message = "The live feed is not available now; poll /api/v1/occupancy/overview."


@bp.errorhandler(LiveUnavailable)
def live_unavailable(exc: LiveUnavailable):
    """503 JSON body with a ``Retry-After`` header (seconds) so clients back off."""
    db.session.rollback()
    response = jsonify(exc.to_dict())
    response.status_code = exc.status
    response.headers["Retry-After"] = str(exc.details.get("retry_after", 5))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/occupancy/overview")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
@validate(404, ok=list[OverviewOut], auth=True, tags=("occupancy",))
def occupancy_overview(query: GateQuery):
    """Every point the caller may see (``?market_point=CODE`` for one): inside now,
    gauge level, today's counts and alerts. Pages poll this when there is no stream."""
    points = visible_points(query.market_point)
    response = jsonify(checkin_occupancy.overview(points=points))
    response.headers["Cache-Control"] = "no-store"
    return response


def _still_allowed(user_id: int, token: str | None, only: set[int] | None):
    """Return a callable telling whether the stream's caller may still watch: for a
    bearer ``token``, that it is unrevoked and still ``user_id``'s; for a session,
    that the account is active; either way a role that sees the stream's points
    (``only``: the point ids of a staff or one-point stream; None: every point).
    It runs outside the request (in the streaming generator), in an app context of its
    own; a database error counts as "no" (the client reconnects and is checked anew)."""
    app = current_app._get_current_object()

    def check() -> bool:
        with app.app_context():
            try:
                user = user_for_token(token) if token else db.session.get(User, user_id)
                if user is None or user.id != user_id or not user.active:
                    return False
                if user.role in (SUPERVISOR, ADMIN):
                    return True
                return user.role == STAFF and only is not None and only <= {user.market_point_id}
            except Exception:
                log.warning("live feed: could not re-check a stream's caller", exc_info=True)
                return False
            finally:
                db.session.remove()

    return check


@bp.get("/occupancy/stream")
@api_or_page_roles(STAFF, SUPERVISOR, ADMIN)
@validate(404, media="text/event-stream", auth=True, tags=("occupancy",))
def occupancy_stream(query: GateQuery):
    """Server-Sent Events: a snapshot of the points the caller may see, then every
    change there as it commits (checkin/live.py). 503 ``live_unavailable`` with
    ``Retry-After`` without Redis or when too many streams are open."""
    code = query.market_point
    points = visible_points(code)
    config = current_app.config
    hub = current_app.extensions.get(live.HUB)
    if hub is None or not hub.ensure_running():
        raise LiveUnavailable(retry_after=config["LIVE_RETRY_SECONDS"])
    user = g.api_user
    try:  # before the snapshot, so nothing falls between the two
        q = hub.subscribe(
            f"user:{user.id}",
            config["LIVE_MAX_STREAMS_PER_PROCESS"],
            config["LIVE_MAX_STREAMS_PER_USER"],
        )
    except live.StreamLimit:
        raise LiveUnavailable(
            "Too many live streams are open; poll /api/v1/occupancy/overview.",
            retry_after=max(config["LIVE_RETRY_SECONDS"], 30),
        ) from None
    try:
        snapshot = checkin_occupancy.overview(points=points)
    except Exception:
        hub.unsubscribe(q)
        raise
    only = {p.id for p in points} if code is not None or user.role == STAFF else None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else None
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        # A client that stops reading would block a write, and the thread, forever;
        # with a timeout the write fails and gunicorn frees the thread.
        sock.settimeout(config["LIVE_WRITE_TIMEOUT_SECONDS"])
    body = live.stream(
        hub,
        q,
        snapshot,
        only,
        config["LIVE_HEARTBEAT_SECONDS"],
        config["LIVE_STREAM_MAX_SECONDS"],
        _still_allowed(user.id, token, only),
    )
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(body, mimetype="text/event-stream", headers=headers)

"""The Antri application factory: config, extensions, blueprints, errors, CLI."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, has_request_context, jsonify, render_template, request, session
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

import jobs
from channels import whatsapp as channels_whatsapp
from common import locking, timeutil, transactions
from common.errors import DomainError
from common.labels import label
from common.text import ensure_clean
from common.timeutil import clock_text, day_text, when_text
from common.transactions import end_request_transaction, end_transaction
from config import load_config
from extensions import babel, csrf, db, limiter, login_manager, migrate
from notify import relay as notify_relay

log = logging.getLogger("antri")


class Antri(Flask):
    """Flask with one transaction per request: every view runs in
    ``common.transactions.run_view``, which commits once after it (or keeps nothing on
    an error), so views never commit."""

    def dispatch_request(self) -> Any:
        """Run the matched view in one transaction; return its response."""
        return transactions.run_view(super().dispatch_request, self.make_response)


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build a configured Antri app.

    Args: overrides, config keys applied after the environment (tests use this);
      ``INSTANCE_PATH`` among them (or env ANTRI_INSTANCE_PATH) moves ``instance/``.
    Returns: the Flask app. Nothing connects to the database or Redis here.
    Raises: config.ConfigError on a malformed or missing setting.
    """
    overrides = dict(overrides or {})
    instance_path = overrides.pop("INSTANCE_PATH", None) or os.environ.get("ANTRI_INSTANCE_PATH")
    app = Antri(__name__, instance_path=instance_path, instance_relative_config=True)
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    app.config.update(load_config(instance))
    if overrides:
        app.config.update(overrides)
    if app.config.get("ANTRI_TEST_CLOCK"):
        # A server or worker a test started: the test's clock (issue 14 item 6b).
        timeutil.start_clock(*timeutil.parse_test_clock(app.config["ANTRI_TEST_CLOCK"]))
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # Wait for SQLite's write lock rather than fail at once under a rush.
        engine_options = {"connect_args": {"timeout": 30}}
    else:
        engine_options = {"pool_pre_ping": True}
    # Keep phone numbers, e-mails and NIK hashes out of logged SQL errors.
    engine_options["hide_parameters"] = True
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options)

    if app.config["PROXY_HOPS"]:
        # Behind a load balancer the client's IP (for rate limits) is in X-Forwarded-For.
        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    _register_extensions(app)
    _register_blueprints(app)
    _register_error_handlers(app)
    app.before_request(_reject_forbidden_characters)
    _register_template_helpers(app)
    _register_cli(app)
    jobs.init_app(app)
    notify_relay.init_app(app, kick_relay=jobs.kick_relay)
    channels_whatsapp.init_app(app, enqueue=jobs.enqueue_inbound)
    app.add_url_rule("/healthz", "healthz", healthz)
    return app


def _select_locale() -> str:
    """Bahasa Indonesia unless the visitor chose English with ``?lang=en``."""
    from flask import current_app

    languages = current_app.config["LANGUAGES"]
    if not has_request_context():  # CLI commands and jobs speak the default language
        return languages[0]
    chosen = request.args.get("lang")
    if chosen in languages:
        session["lang"] = chosen
        return chosen
    return session.get("lang") if session.get("lang") in languages else languages[0]


def _register_extensions(app: Flask) -> None:
    db.init_app(app)
    # PostgreSQL: every connection starts with lock_timeout = LOCK_TIMEOUT_MS.
    locking.init_app(app)
    # Runs before Flask-SQLAlchemy removes the session (teardowns run in reverse).
    app.teardown_request(end_request_transaction)
    migrate.init_app(app, db, directory=str(Path(__file__).parent / "migrations"))
    csrf.init_app(app)
    babel.init_app(app, locale_selector=_select_locale)
    login_manager.init_app(app)
    limiter.init_app(app)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = None
    from checkin import live

    live.init_app(app)  # after overrides: tests point REDIS_URL and LIVE_CHANNEL elsewhere

    # Every model module must be imported so migrations and relationships see it.
    import accounts.auth  # noqa: F401  (registers the user loader)
    import accounts.models  # noqa: F401
    import ballots.models  # noqa: F401
    import channels.models  # noqa: F401
    import checkin.models  # noqa: F401
    import common.audit  # noqa: F401
    import slots.models  # noqa: F401


def _register_blueprints(app: Flask) -> None:
    from accounts import bp as accounts_bp
    from admin import bp as admin_bp
    from api import bp as api_bp
    from ballots.views import bp as ballots_bp
    from channels import bp as channels_bp
    from checkin import bp as checkin_bp
    from qr import bp as qr_bp
    from slots.views import bp as slots_bp

    app.register_blueprint(slots_bp)
    app.register_blueprint(qr_bp)
    app.register_blueprint(checkin_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(ballots_bp)
    app.register_blueprint(channels_bp)
    # The API authenticates with bearer tokens, never cookies, so CSRF does not apply.
    csrf.exempt(api_bp)
    app.register_blueprint(api_bp)


def _reject_forbidden_characters() -> None:
    """Turn away a path, query or form holding NUL or lone surrogates (422, not a 500),
    naming the faulty query or form field in ``fields``."""
    ensure_clean(request.path)
    inputs = [request.args]
    if request.method == "POST" and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        inputs.append(request.form)
    for values in inputs:
        for key, value in values.items(multi=True):
            ensure_clean(key, "query" if values is request.args else "form")
            ensure_clean(value, key)


def _wants_json() -> bool:
    if request.path.startswith("/api/") or request.path == "/healthz":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _error_response(
    code: str, message: str, status: int, fields: dict[str, str] | None = None, **extra: Any
):
    """The error as JSON (the API's one shape, ``{error, message, fields, ...}``) or a page."""
    if _wants_json():
        fields = {name: str(text) for name, text in (fields or {}).items()}
        return jsonify({"error": code, "message": message, "fields": fields, **extra}), status
    return (
        render_template("error.html", code=code, message=message, status=status),
        status,
    )


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        # A refusal rolls back what it wrote; one that wrote nothing (a full slot)
        # commits, so the connection keeps its prepared statements.
        end_transaction()
        return _error_response(
            exc.code, str(exc.message), exc.status, fields=exc.fields, **exc.details
        )

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return _error_response(
            "csrf_failed",
            _("The form expired or was sent from elsewhere. Reload the page and try again."),
            400,
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        names = {
            400: ("bad_request", _("The request is not valid.")),
            404: ("not_found", _("Page not found.")),
            405: ("method_not_allowed", _("This method is not allowed here.")),
            413: ("too_large", _("The request is too large.")),
            429: ("rate_limited", _("Too many requests. Please wait a moment.")),
        }
        code, message = names.get(exc.code or 500, ("http_error", exc.description or "Error"))
        return _error_response(code, message, exc.code or 500)

    @app.errorhandler(IntegrityError)
    def integrity_error(exc: IntegrityError):
        db.session.rollback()
        log.warning("integrity error: %s", exc.orig)
        return _error_response(
            "conflict", _("This request conflicts with another. Please try again."), 409
        )

    @app.errorhandler(OperationalError)
    def database_busy(exc: OperationalError):
        db.session.rollback()
        log.error("database unavailable: %s", exc.orig)
        response, status = _error_response(
            "busy", _("The service is busy. Please try again in a moment."), 503
        )
        return response, status, {"Retry-After": "5"}


def healthz():
    """Report whether the database and Redis answer: 200 when the database does."""
    from flask import current_app

    database = "ok"
    try:
        db.session.execute(text("SELECT 1"))  # the request's wrapper commits it
    except Exception as exc:  # any failure means unhealthy; the reason goes to the log
        log.error("healthz database: %s", exc)
        database = "error"
        db.session.rollback()
    redis_state = "disabled"
    url = current_app.config.get("REDIS_URL")
    if url:
        import redis

        try:
            # The process's pooled client: a new connection per probe costs a
            # millisecond, more than the probe itself.
            jobs.redis_connection(url, timeout=1.0).ping()
            redis_state = "ok"
        except (redis.RedisError, ValueError) as exc:
            log.error("healthz redis: %s", exc)
            redis_state = "error"
    status = "ok" if database == "ok" and redis_state != "error" else "degraded"
    code = 200 if database == "ok" else 503
    return jsonify({"status": status, "database": database, "redis": redis_state}), code


def _booking_code(code: str) -> str:
    """Jinja filter: a booking code as read aloud and printed, ``ABCD-EFGH``."""
    return f"{code[:4]}-{code[4:]}"


def _language_url(language: str) -> str:
    """This page's URL in another language, keeping its path and query."""
    from urllib.parse import urlencode

    args = request.args.to_dict(flat=False)
    args["lang"] = [language]
    return request.path + "?" + urlencode(args, doseq=True)


def _register_template_helpers(app: Flask) -> None:
    # Every date and time on a page goes through these three (issue 14 item 12):
    # ``day`` (``Kamis, 4 Des 2026``), ``clock`` (``09:00``), ``when`` (both).
    app.jinja_env.filters["day"] = day_text
    app.jinja_env.filters["clock"] = clock_text
    app.jinja_env.filters["when"] = when_text
    app.jinja_env.filters["local"] = clock_text  # the earlier name of ``clock``
    app.jinja_env.filters["label"] = label  # statuses, kinds and roles in words
    app.jinja_env.filters["booking_code"] = _booking_code
    app.jinja_env.globals.update(get_locale=get_locale, language_url=_language_url)


def _register_cli(app: Flask) -> None:
    from cli import register

    register(app)

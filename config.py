"""Antri configuration: every setting comes from an environment variable.

Values are parsed strictly: a malformed boolean or integer is a startup error, not a
silent default. In production (``ANTRI_ENV=production``) the secrets must be given;
in development they are generated once into ``instance/`` so sessions survive restarts.
"""

from __future__ import annotations

import os
import secrets
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.timeutil import parse_test_clock

BASE_DIR = Path(__file__).resolve().parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(RuntimeError):
    """A setting is missing or malformed; raised at startup so a bad deploy fails fast."""


def parse_bool(name: str, raw: str) -> bool:
    """Parse a boolean setting.

    Args: name of the variable (for the message), raw text.
    Returns: True for 1/true/yes/on, False for 0/false/no/off (case-insensitive).
    Raises: ConfigError for anything else, so a typo never turns a guard off.
    """
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")


def parse_int(name: str, raw: str, minimum: int = 0) -> int:
    """Parse an integer setting of at least ``minimum``.

    Raises: ConfigError when the text is not an integer or is below the minimum.
    """
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _instance_secret(instance_path: Path, filename: str) -> str:
    """Read, or create once, a random development secret under ``instance/``.

    Creation uses O_EXCL so concurrent workers agree on one value.
    """
    path = instance_path / filename
    instance_path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _redis_url(raw: str) -> str | None:
    """Return REDIS_URL or None when unset. Raises ConfigError for another scheme."""
    url = raw.strip()
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}")
    if url.startswith(("redis://", "rediss://")):
        # redis-py would read a malformed database number as database 0, silently.
        path = urllib.parse.urlsplit(url).path.strip("/")
        if path and not path.isdigit():
            raise ConfigError(f"REDIS_URL's database must be a number, got {path!r}")
    return url


CHANNELS = ("log", "webhook")


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    """Return ``raw`` lowercased when it is one of ``allowed``; raise ConfigError."""
    value = raw.strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {raw!r}")
    return value


def _http_url(name: str, raw: str) -> str | None:
    """Return an http(s) URL, None when empty; raise ConfigError for another scheme."""
    value = raw.strip()
    if not value:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018  (raises for a port that is not a number)
    except ValueError as exc:
        raise ConfigError(f"{name} has a malformed port") from exc
    return value


def _public_base_url(raw: str) -> str:
    """Return PUBLIC_BASE_URL without its trailing slash (issue 14 item 3).

    Every absolute link is built on it (``common.links.public_url``), so it must be an
    http(s) URL with a host, and at most a path (``https://example.id/antri``).
    Raises: ConfigError otherwise.
    """
    value = raw.strip().rstrip("/")
    parts = urllib.parse.urlsplit(value)
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(f"PUBLIC_BASE_URL must be a base URL without query or user, got {raw!r}")
    checked = _http_url("PUBLIC_BASE_URL", value)
    if checked is None:
        raise ConfigError("PUBLIC_BASE_URL must not be empty")
    return checked


def parse_share(name: str, raw: str) -> float:
    """Parse a share between 0 and 1 inclusive (``0.3``). Raises ConfigError otherwise."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number between 0 and 1, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise ConfigError(f"{name} must be between 0 and 1, got {raw!r}")
    return value


def parse_limit(name: str, raw: str) -> str:
    """Check a rate-limit string such as ``5/minute;20/hour``.

    Raises: ConfigError when Flask-Limiter's parser rejects it.
    """
    from limits import parse_many

    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a rate limit like '5/minute;20/hour', got {raw!r}")
    return raw


def load_config(instance_path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from the environment.

    Args: instance_path, the app's instance folder (SQLite file, dev secrets, keys);
      env, the variables to read (default ``os.environ``).
    Returns: a dict of Flask config keys.
    Raises: ConfigError for malformed values, or missing secrets in production.
    """
    env = os.environ if env is None else env

    def get(name: str, default: str) -> str:
        return env.get(name, default)

    production = get("ANTRI_ENV", "development").strip().lower() == "production"
    secret_key = env.get("SECRET_KEY")
    if not secret_key:
        if production:
            raise ConfigError("SECRET_KEY must be set when ANTRI_ENV=production")
        secret_key = _instance_secret(instance_path, "secret_key")
    nik_key = env.get("NIK_HASH_KEY")
    if not nik_key:
        if production:
            raise ConfigError("NIK_HASH_KEY must be set when ANTRI_ENV=production")
        nik_key = _instance_secret(instance_path, "nik_hash_key")

    # A fixed start for the app's clock, for tests that must not depend on the hour
    # (issue 14 item 6b; common.timeutil.start_clock). Never in production.
    test_clock = get("ANTRI_TEST_CLOCK", "").strip()
    if test_clock:
        if production:
            raise ConfigError("ANTRI_TEST_CLOCK is for tests only; unset it in production")
        try:
            parse_test_clock(test_clock)
        except ValueError as exc:
            raise ConfigError(f"ANTRI_TEST_CLOCK: {exc}") from None

    database_url = get("DATABASE_URL", "") or f"sqlite:///{instance_path / 'antri.db'}"
    # Heroku-style URLs name the old driver; psycopg 3 is the one installed.
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]

    config = {
        "ANTRI_ENV": "production" if production else "development",
        "ANTRI_TEST_CLOCK": test_clock,
        "SECRET_KEY": secret_key,
        "NIK_HASH_KEY": nik_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": _redis_url(get("REDIS_URL", "")),
        "NOTIFY_LOG_FILE": get("NOTIFY_LOG_FILE", "") or str(instance_path / "notifications.jsonl"),
        "PUBLIC_BASE_URL": _public_base_url(get("PUBLIC_BASE_URL", "http://127.0.0.1:5000")),
        # Messages to residents (notify.channels, jobs): the channel, its retries, timing.
        "NOTIFY_CHANNEL": _choice("NOTIFY_CHANNEL", get("NOTIFY_CHANNEL", "log"), CHANNELS),
        "NOTIFY_WEBHOOK_URL": _http_url("NOTIFY_WEBHOOK_URL", get("NOTIFY_WEBHOOK_URL", "")),
        "NOTIFY_WEBHOOK_SECRET": get("NOTIFY_WEBHOOK_SECRET", ""),
        "NOTIFY_WEBHOOK_TIMEOUT": parse_int(
            "NOTIFY_WEBHOOK_TIMEOUT", get("NOTIFY_WEBHOOK_TIMEOUT", "10"), 1
        ),
        "NOTIFY_MAX_ATTEMPTS": parse_int("NOTIFY_MAX_ATTEMPTS", get("NOTIFY_MAX_ATTEMPTS", "5"), 1),
        "NOTIFY_RETRY_SECONDS": parse_int(
            "NOTIFY_RETRY_SECONDS", get("NOTIFY_RETRY_SECONDS", "30"), 1
        ),
        "NOTIFY_LEASE_SECONDS": parse_int(
            "NOTIFY_LEASE_SECONDS", get("NOTIFY_LEASE_SECONDS", "120"), 1
        ),
        "REMINDER_MINUTES": parse_int("REMINDER_MINUTES", get("REMINDER_MINUTES", "60"), 1),
        "NO_SHOW_GRACE_MINUTES": parse_int(
            "NO_SHOW_GRACE_MINUTES", get("NO_SHOW_GRACE_MINUTES", "15"), 0
        ),
        "RETENTION_DAYS": parse_int("RETENTION_DAYS", get("RETENTION_DAYS", "30"), 1),
        "RQ_QUEUE": get("RQ_QUEUE", "antri") or "antri",
        # A web process asks a worker to relay new notices at most this often (0: at
        # every change that wrote a notice).
        "RELAY_KICK_SECONDS": parse_int("RELAY_KICK_SECONDS", get("RELAY_KICK_SECONDS", "1"), 0),
        "JOBS_RELAY_SECONDS": parse_int("JOBS_RELAY_SECONDS", get("JOBS_RELAY_SECONDS", "10"), 1),
        "JOBS_TIMED_SECONDS": parse_int("JOBS_TIMED_SECONDS", get("JOBS_TIMED_SECONDS", "60"), 1),
        # Without REDIS_URL, requests run the timed work themselves at most this often.
        "INLINE_SWEEP_SECONDS": parse_int(
            "INLINE_SWEEP_SECONDS", get("INLINE_SWEEP_SECONDS", "60"), 0
        ),
        # A signing key given by the environment (PKCS#8 PEM) instead of the folder.
        "TICKET_PRIVATE_KEY": get("TICKET_PRIVATE_KEY", "").replace("\\n", "\n") or None,
        "TICKET_KEY_ID": parse_int("TICKET_KEY_ID", get("TICKET_KEY_ID", "1"), 1),
        "TICKET_KEY_DIR": get("TICKET_KEY_DIR", "") or str(instance_path / "keys"),
        "DEFAULT_TIMEZONE": get("DEFAULT_TIMEZONE", "Asia/Jakarta"),
        "DEFAULT_SAFE_LIMIT": parse_int("DEFAULT_SAFE_LIMIT", get("DEFAULT_SAFE_LIMIT", "40"), 1),
        "BOOKING_LIMIT_PER_NIK": parse_int(
            "BOOKING_LIMIT_PER_NIK", get("BOOKING_LIMIT_PER_NIK", "1"), 1
        ),
        "BOOKING_LIMIT_PER_KK": parse_int(
            "BOOKING_LIMIT_PER_KK", get("BOOKING_LIMIT_PER_KK", "1"), 1
        ),
        # Bookings one person may collect for as a proxy per local date, over every
        # point (issue 15 part 3); unrelated to PROXY_HOPS (reverse-proxy hops).
        "PROXY_LIMIT_PER_DAY": parse_int("PROXY_LIMIT_PER_DAY", get("PROXY_LIMIT_PER_DAY", "2"), 1),
        # How long a statement waits for another transaction's lock before it gives up
        # and the request is answered 503 "busy": milliseconds (PostgreSQL: each
        # connection's lock_timeout, set by common.locking.init_app).
        # Issue 16: the share of a ballot's places residents aged 60+ go first for.
        "BALLOT_ELDERLY_SHARE": parse_share(
            "BALLOT_ELDERLY_SHARE", get("BALLOT_ELDERLY_SHARE", "0.3")
        ),
        "LOCK_TIMEOUT_MS": parse_int("LOCK_TIMEOUT_MS", get("LOCK_TIMEOUT_MS", "5000"), 1),
        "BOOKING_LIMIT_WINDOW_DAYS": parse_int(
            "BOOKING_LIMIT_WINDOW_DAYS", get("BOOKING_LIMIT_WINDOW_DAYS", "7"), 1
        ),
        "CANCEL_CUTOFF_MINUTES": parse_int(
            "CANCEL_CUTOFF_MINUTES", get("CANCEL_CUTOFF_MINUTES", "60"), 0
        ),
        "CHECKIN_EARLY_MINUTES": parse_int(
            "CHECKIN_EARLY_MINUTES", get("CHECKIN_EARLY_MINUTES", "15"), 0
        ),
        "CHECKIN_LATE_MINUTES": parse_int(
            "CHECKIN_LATE_MINUTES", get("CHECKIN_LATE_MINUTES", "30"), 0
        ),
        # Arrival waves inside a slot (issue 15): minutes per wave; 0 turns waves off.
        "ARRIVAL_WAVE_MINUTES": parse_int(
            "ARRIVAL_WAVE_MINUTES", get("ARRIVAL_WAVE_MINUTES", "10"), 0
        ),
        "DWELL_MINUTES": parse_int("DWELL_MINUTES", get("DWELL_MINUTES", "60"), 1),
        "BOOKING_DAYS_AHEAD": parse_int("BOOKING_DAYS_AHEAD", get("BOOKING_DAYS_AHEAD", "7"), 1),
        "SESSION_COOKIE_SECURE": parse_bool(
            "SESSION_COOKIE_SECURE",
            get("SESSION_COOKIE_SECURE", "true" if production else "false"),
        ),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_ENABLED": parse_bool("WTF_CSRF_ENABLED", get("WTF_CSRF_ENABLED", "true")),
        # A booking form may sit open while a resident finds their KTP.
        "WTF_CSRF_TIME_LIMIT": None,
        "RATELIMIT_ENABLED": parse_bool("RATELIMIT_ENABLED", get("RATELIMIT_ENABLED", "true")),
        "RATELIMIT_STORAGE_URI": _redis_url(get("REDIS_URL", "")) or "memory://",
        "RATELIMIT_STORAGE_OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        # A dead Redis must not refuse bookings: count in memory until it is back.
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_IN_MEMORY_FALLBACK": get("RATE_LIMIT_BOOKING_IP", "120/minute;2000/hour"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_KEY_PREFIX": "antri",
        "RATE_LIMIT_BOOKING_IP": parse_limit(
            "RATE_LIMIT_BOOKING_IP", get("RATE_LIMIT_BOOKING_IP", "120/minute;2000/hour")
        ),
        "RATE_LIMIT_BOOKING_NIK": parse_limit(
            "RATE_LIMIT_BOOKING_NIK", get("RATE_LIMIT_BOOKING_NIK", "5/minute;20/hour")
        ),
        "RATE_LIMIT_LOOKUP_IP": parse_limit(
            "RATE_LIMIT_LOOKUP_IP", get("RATE_LIMIT_LOOKUP_IP", "60/minute;600/hour")
        ),
        "RATE_LIMIT_LOOKUP_CODE": parse_limit(
            "RATE_LIMIT_LOOKUP_CODE", get("RATE_LIMIT_LOOKUP_CODE", "10/minute;50/hour")
        ),
        # Failed sign-ins (issue 14 item 1): a back-off per account from one address,
        # and a wider one per address over every account; successes use no budget.
        "LOGIN_LIMIT_PER_ACCOUNT": parse_limit(
            "LOGIN_LIMIT_PER_ACCOUNT", get("LOGIN_LIMIT_PER_ACCOUNT", "5/minute;30/hour")
        ),
        "LOGIN_LIMIT_PER_ADDRESS": parse_limit(
            "LOGIN_LIMIT_PER_ADDRESS", get("LOGIN_LIMIT_PER_ADDRESS", "20/minute;200/hour")
        ),
        # Live feed (checkin/live.py): the pub/sub channel is shared by every Redis
        # database number, so parallel deployments or test runs need their own name.
        "LIVE_CHANNEL": get("LIVE_CHANNEL", "antri:live").strip() or "antri:live",
        "LIVE_HEARTBEAT_SECONDS": parse_int(
            "LIVE_HEARTBEAT_SECONDS", get("LIVE_HEARTBEAT_SECONDS", "15"), 1
        ),
        "LIVE_STREAM_MAX_SECONDS": parse_int(
            "LIVE_STREAM_MAX_SECONDS", get("LIVE_STREAM_MAX_SECONDS", "1800"), 10
        ),
        "LIVE_RETRY_SECONDS": parse_int("LIVE_RETRY_SECONDS", get("LIVE_RETRY_SECONDS", "5"), 1),
        "LIVE_POLL_SECONDS": parse_int("LIVE_POLL_SECONDS", get("LIVE_POLL_SECONDS", "5"), 1),
        # Each open stream holds one server thread: cap them per process (gunicorn's
        # --threads must be larger, with room for ordinary requests) and per account.
        "LIVE_MAX_STREAMS_PER_PROCESS": parse_int(
            "LIVE_MAX_STREAMS_PER_PROCESS", get("LIVE_MAX_STREAMS_PER_PROCESS", "24"), 1
        ),
        "LIVE_MAX_STREAMS_PER_USER": parse_int(
            "LIVE_MAX_STREAMS_PER_USER", get("LIVE_MAX_STREAMS_PER_USER", "5"), 1
        ),
        # A stream whose client stops reading is cut after this long blocked in a write.
        "LIVE_WRITE_TIMEOUT_SECONDS": parse_int(
            "LIVE_WRITE_TIMEOUT_SECONDS", get("LIVE_WRITE_TIMEOUT_SECONDS", "30"), 1
        ),
        # Live pages re-read every number this often, for what changes with the clock
        # alone (visits past DWELL_MINUTES, the refused-scans window).
        "LIVE_REFRESH_SECONDS": parse_int(
            "LIVE_REFRESH_SECONDS", get("LIVE_REFRESH_SECONDS", "60"), 1
        ),
        # Phone channels (issue 17): the inbound webhooks' secrets (an empty one closes
        # that endpoint: 503 channel_not_configured), WhatsApp's Cloud API for replies,
        # the conversation's time-out and the budgets per phone number.
        "SMS_INBOUND_SECRET": get("SMS_INBOUND_SECRET", ""),
        "WHATSAPP_VERIFY_TOKEN": get("WHATSAPP_VERIFY_TOKEN", ""),
        "WHATSAPP_APP_SECRET": get("WHATSAPP_APP_SECRET", ""),
        "WHATSAPP_TOKEN": get("WHATSAPP_TOKEN", ""),
        "WHATSAPP_PHONE_NUMBER_ID": get("WHATSAPP_PHONE_NUMBER_ID", ""),
        "WHATSAPP_API_URL": _http_url(
            "WHATSAPP_API_URL", get("WHATSAPP_API_URL", "https://graph.facebook.com/v21.0")
        ),
        # USSD gateways cannot sign a body: the secret rides in the callback URL (?key=).
        "USSD_INBOUND_SECRET": get("USSD_INBOUND_SECRET", ""),
        "CHANNEL_CONVERSATION_MINUTES": parse_int(
            "CHANNEL_CONVERSATION_MINUTES", get("CHANNEL_CONVERSATION_MINUTES", "30"), 1
        ),
        "CHANNEL_RATE_LIMIT_PHONE": parse_limit(
            "CHANNEL_RATE_LIMIT_PHONE", get("CHANNEL_RATE_LIMIT_PHONE", "10/minute;60/hour")
        ),
        "CHANNEL_RATE_LIMIT_USSD": parse_limit(
            "CHANNEL_RATE_LIMIT_USSD", get("CHANNEL_RATE_LIMIT_USSD", "40/minute;300/hour")
        ),
        "CHANNEL_RATE_LIMIT_NOTICE": parse_limit(
            "CHANNEL_RATE_LIMIT_NOTICE", get("CHANNEL_RATE_LIMIT_NOTICE", "1/10minutes")
        ),
        "PROXY_HOPS": parse_int("PROXY_HOPS", get("PROXY_HOPS", "0"), 0),
        "BABEL_DEFAULT_LOCALE": get("BABEL_DEFAULT_LOCALE", "id"),
        "BABEL_DEFAULT_TIMEZONE": get("DEFAULT_TIMEZONE", "Asia/Jakarta"),
        "BABEL_TRANSLATION_DIRECTORIES": str(BASE_DIR / "translations"),
        "LANGUAGES": ("id", "en"),
        "MAX_CONTENT_LENGTH": 64 * 1024,
        "JSON_SORT_KEYS": False,
    }
    if config["NOTIFY_CHANNEL"] == "webhook" and not (
        config["NOTIFY_WEBHOOK_URL"] and config["NOTIFY_WEBHOOK_SECRET"]
    ):
        raise ConfigError(
            "NOTIFY_CHANNEL=webhook needs NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET"
        )
    if (
        production
        and config["WHATSAPP_APP_SECRET"]
        and not (config["WHATSAPP_TOKEN"] and config["WHATSAPP_PHONE_NUMBER_ID"])
    ):
        raise ConfigError(
            "WHATSAPP_APP_SECRET needs WHATSAPP_TOKEN and WHATSAPP_PHONE_NUMBER_ID to reply"
        )
    # A sender must finish before its claim can pass to another one.
    if config["NOTIFY_LEASE_SECONDS"] <= 2 * config["NOTIFY_WEBHOOK_TIMEOUT"]:
        raise ConfigError("NOTIFY_LEASE_SECONDS must be more than twice NOTIFY_WEBHOOK_TIMEOUT")
    return config

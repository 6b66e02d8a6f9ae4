"""Shared fixtures: one app per database backend, clean tables per test, factories.

Every test that uses ``app`` (directly or through ``client``, ``make_slot``, ...) runs
once on SQLite and once on PostgreSQL at 127.0.0.1:5432. PostgreSQL is skipped when it
cannot be reached, except under CI=true, where it must be there. The summary line
names the databases that ran.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app
from common.timeutil import utcnow
from extensions import db

PG_URLS = (
    os.environ.get("TEST_POSTGRES_URL", ""),
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)
BACKENDS_RUN: set[str] = set()
SERVICES_RUN: set[str] = set()
# A valid NIK head: Kec. Senen (317104), born 12-05-1990 (a man); a serial follows.
NIK_PREFIX = "317104120590"


# The clock every test reads (issue 14 item 6b): the app's ``common.timeutil.utcnow``
# starts at TEST_CLOCK_START (10:00 WIB on a fixed Thursday) and ticks with real time,
# whatever the hour the suite runs at. ANTRI_TEST_CLOCK=<aware ISO instant> starts it
# elsewhere (``make test ANTRI_TEST_CLOCK=2026-12-03T23:50:00+07:00``). Servers, workers
# and the browser tests' live server inherit it through the environment, anchored to
# the same real instant, so every process reads one clock; browsers get it from
# ``install_browser_clock``.
TEST_CLOCK_START = "2026-12-03T10:00:00+07:00"


_CLOCK_START: list[datetime] = []


def _start_test_clock() -> None:
    """Start the app's clock (and that of every process started from now on) at the
    test clock's start instant, now."""
    from common.timeutil import start_clock

    anchor = time.time()
    start_clock(_CLOCK_START[0], anchor)
    os.environ["ANTRI_TEST_CLOCK"] = f"{_CLOCK_START[0].isoformat()}@{anchor}"


def pytest_configure(config):
    """Read where the test clock starts, and start it before any app is built."""
    from common.timeutil import parse_test_clock

    start = os.environ.get("ANTRI_TEST_CLOCK") or TEST_CLOCK_START
    _CLOCK_START[:] = [parse_test_clock(start)[0]]
    _start_test_clock()


@pytest.fixture(autouse=True)
def test_clock():
    """Every test starts at the same instant (a suite of 15 minutes started at 23:50
    would otherwise cross midnight half-way); the clock ticks during the test. Servers
    a module or session shares keep the clock they started with (seconds apart)."""
    _start_test_clock()


def install_browser_clock(context) -> None:
    """Make a Playwright browser context's ``Date`` read the test clock (ticking), as
    the app does: pages compare times the server sent with their own clock."""
    context.clock.install(time=utcnow())


def _postgres_url() -> str | None:
    for url in filter(None, PG_URLS):
        try:
            engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
            return url
        except sa.exc.OperationalError:
            continue
    return None


def _reset_schema(app) -> None:
    """Drop every table (the project's and Alembic's) and run the migrations."""
    with app.app_context():
        meta = sa.MetaData()
        meta.reflect(bind=db.engine)
        meta.drop_all(bind=db.engine)
        upgrade()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def app(request, tmp_path_factory):
    """The Antri app on one backend, schema built by the Alembic migrations."""
    instance = tmp_path_factory.mktemp(f"instance-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{instance / 'test.db'}"
    else:
        url = _postgres_url()
        if url is None:
            if os.environ.get("CI") == "true":
                pytest.fail("PostgreSQL at 127.0.0.1:5432 is required under CI")
            pytest.skip("PostgreSQL is not reachable")
    application = create_app(
        {
            "INSTANCE_PATH": str(instance),
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "test-secret",
            "NIK_HASH_KEY": "test-nik-key",
            "TICKET_KEY_DIR": str(instance / "keys"),
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": False,  # tests/common/test_rate_limits.py turns them on
            "INLINE_SWEEP_SECONDS": 0,  # timed work runs when a test says so
            "RELAY_KICK_SECONDS": 0,  # every change kicks the relay: no timers between tests
            "SERVER_NAME": "antri.test",
            "TESTING": True,
        }
    )
    _reset_schema(application)
    BACKENDS_RUN.add(request.param)
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def backend(app) -> str:
    """The name of the database dialect under test: ``sqlite`` or ``postgresql``."""
    return "postgresql" if "postgresql" in app.config["SQLALCHEMY_DATABASE_URI"] else "sqlite"


@pytest.fixture
def ctx(app):
    """An app context for the test; every table is emptied afterwards."""
    with app.app_context():
        yield app
        empty_tables()


def empty_tables() -> None:
    """Delete every row of every table (inside an app context)."""
    db.session.remove()
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # The audit log refuses DELETE (an append-only trigger): the test
            # connection, a superuser, lifts triggers (and foreign keys) for this wipe
            # only. DELETE and a sequence restart take ~30 ms on tables this small,
            # TRUNCATE ~350 ms (it makes new files for every table): ~3 minutes a pass.
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            for name in tables:
                conn.execute(sa.text(f"DELETE FROM {name}"))  # noqa: S608  (names from our metadata)
            sequences = conn.execute(
                sa.text(
                    "SELECT sequence_name FROM information_schema.sequences"
                    " WHERE sequence_schema = current_schema()"
                )
            ).scalars()
            for sequence in sequences.all():
                conn.execute(sa.text(f'ALTER SEQUENCE "{sequence}" RESTART'))
        else:
            # The audit log refuses DELETE (an append-only trigger): lift it for the wipe.
            guards = conn.execute(
                sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
            ).all()
            for name, _ in guards:
                conn.execute(sa.text(f"DROP TRIGGER {name}"))
            for name in tables:
                conn.execute(sa.text(f"DELETE FROM {name}"))  # noqa: S608  (names from our metadata)
            for _, sql in guards:
                conn.execute(sa.text(sql))


@pytest.fixture
def client(ctx):
    """A Flask test client on the backend under test."""
    return ctx.test_client()


_serial = count(1)


@pytest.fixture
def nik():
    """Return a callable giving a fresh valid NIK on each call (distinct serials)."""

    def make() -> str:
        return f"{NIK_PREFIX}{next(_serial) % 9999 + 1:04d}"

    return make


@pytest.fixture
def make_point(ctx):
    """Return a callable creating a market point: ``make_point(code="JKT-900")``."""
    from slots.models import MarketPoint

    def make(code: str = "JKT-900", safe_limit: int = 40, **fields) -> MarketPoint:
        point = MarketPoint(
            code=code,
            name=fields.pop("name", f"Pasar Uji {code}"),
            address=fields.pop("address", "Jl. Uji No. 1"),
            kecamatan=fields.pop("kecamatan", "Senen"),
            kecamatan_code=fields.pop("kecamatan_code", "317104"),
            city=fields.pop("city", "Jakarta Pusat"),
            safe_limit=safe_limit,
            timezone=fields.pop("timezone", "Asia/Jakarta"),
            **fields,
        )
        db.session.add(point)
        db.session.commit()
        return point

    return make


@pytest.fixture
def make_slot(ctx, make_point):
    """Return a callable creating a published slot.

    ``make_slot(capacity=3, starts_in=-10, minutes=30, point=None)``: the slot starts
    ``starts_in`` minutes from now (negative: already running), whole minutes.
    """
    from slots.models import MarketPoint, Slot

    def make(
        capacity: int = 5,
        starts_in: int = -10,
        minutes: int = 30,
        point=None,
        now: datetime | None = None,
    ) -> Slot:
        point = point or db.session.scalar(sa.select(MarketPoint)) or make_point()
        base = (now or utcnow()).replace(second=0, microsecond=0)
        start = base + timedelta(minutes=starts_in)
        slot = Slot(
            market_point=point,
            starts_at=start,
            ends_at=start + timedelta(minutes=minutes),
            capacity=capacity,
            booked_count=0,
            # Published a day before the earlier of now and the slot's own base, so a
            # slot made for a later day is bookable now, whatever the hour.
            published_at=min(base, utcnow()) - timedelta(days=1),
        )
        db.session.add(slot)
        db.session.commit()
        return slot

    return make


@pytest.fixture
def make_user(ctx):
    """Return a callable creating an account and a bearer token: ``(user, token)``."""
    from accounts.service import create_user, issue_token

    def make(email: str, role: str, point=None) -> tuple:
        user = create_user(email, role, "correct-horse-1", point)
        token = issue_token(user, "test")
        db.session.commit()
        return user, token

    return make


@pytest.fixture
def redis_url() -> str:
    """URL of the local Redis, database 15 (flushed); skipped when absent, except in CI."""
    import redis

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {url} is required under CI")
        pytest.skip("Redis is not reachable")
    SERVICES_RUN.add("redis")
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium through Playwright, one per test session (Playwright's
    sync API allows one instance per thread, so every browser test module shares it)."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.fail("CI=true but /usr/bin/chromium is missing (make browser)", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        SERVICES_RUN.add("chromium")
        plain_new_context = chromium.new_context

        def new_context(*args, **kwargs):
            context = plain_new_context(*args, **kwargs)
            install_browser_clock(context)
            return context

        chromium.new_context = new_context  # every context reads the test clock
        try:
            yield chromium
        finally:
            chromium.close()


def pytest_terminal_summary(terminalreporter):
    """Say which databases and services the suite exercised."""
    ran = ", ".join(sorted(BACKENDS_RUN)) or "none"
    terminalreporter.write_line(f"databases exercised: {ran}")
    terminalreporter.write_line(f"services exercised: {', '.join(sorted(SERVICES_RUN)) or 'none'}")
    terminalreporter.write_line(f"process timezone: {os.environ.get('TZ', 'system')} {time.tzname}")
    start = os.environ.get("ANTRI_TEST_CLOCK", "").partition("@")[0]
    if start:
        local = datetime.fromisoformat(start).astimezone(ZoneInfo("Asia/Jakarta"))
        terminalreporter.write_line(f"test clock started at: {local:%Y-%m-%d %H:%M} WIB")

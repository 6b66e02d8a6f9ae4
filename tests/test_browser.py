"""Antri as a new user meets it: a real app under gunicorn, driven in Debian's Chromium.

A resident on a cheap 360 px phone finds a market, books the slot running now and gets
a QR ticket; staff sign in at the gate and "scan" it the way a hand-held scanner in
keyboard mode does; a supervisor sees the person inside. Screenshots of each step go
to ``test-artifacts/screenshots/`` (and to ``$ANTRI_SCREENSHOTS`` when set). Any console
error, page error or HTTP 5xx seen by the browser fails the test.

Skipped when /usr/bin/chromium is missing, except under CI=true, where it fails.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    expect,
)

from tests.clock import now_local

CHROMIUM = Path("/usr/bin/chromium")
UNDER_CI = os.environ.get("CI") == "true"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not UNDER_CI,
        reason="Debian's Chromium is not installed at /usr/bin/chromium (make browser)",
    ),
]

REPO = Path(__file__).resolve().parent.parent
# The venv's bin directory: do not resolve symlinks, .venv/bin/python points outside it.
VENV_BIN = Path(sys.executable).parent
SHOTS = REPO / "test-artifacts" / "screenshots"
JAKARTA = ZoneInfo("Asia/Jakarta")

POINT_CODE = "JKT-003"
POINT_NAME = "Pasar Senen Blok III - VI"
SAFE_LIMIT = 40  # DEFAULT_SAFE_LIMIT, given to every imported market point
STAFF = ("staff2@antri.test", "gate-pass-1")
BOSS = ("boss2@antri.test", "boss-pass-1")
# Kec. Senen (317104), a woman born 05-05-1990 (day 05 + 40 = 45), serial 0001.
RESIDENT = {"name": "Siti Aminah", "nik": "3171044505900001", "phone": "0812 3456 7890"}
BOOKING_CODE = re.compile(r"[ACDEFGHJKMNPQRTUVWXY34679]{4}-[ACDEFGHJKMNPQRTUVWXY34679]{4}")

# The session's Chromium is the ``browser`` fixture in conftest.py (one Playwright per
# process: every browser test module shares it).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Settings the app reads from the environment that must not leak in from the shell.
APP_SETTINGS = (
    "ANTRI_ENV",
    "REDIS_URL",
    "TICKET_KEY_DIR",
    "DEFAULT_TIMEZONE",
    "DEFAULT_SAFE_LIMIT",
    "WTF_CSRF_ENABLED",
    "SESSION_COOKIE_SECURE",
    "BABEL_DEFAULT_LOCALE",
    "CHECKIN_EARLY_MINUTES",
    "CHECKIN_LATE_MINUTES",
    "DWELL_MINUTES",
    "BOOKING_DAYS_AHEAD",
    "BOOKING_LIMIT_PER_NIK",
    "BOOKING_LIMIT_WINDOW_DAYS",
    "CANCEL_CUTOFF_MINUTES",
    "ARRIVAL_WAVE_MINUTES",
)
HEALTH_TIMEOUT = 20.0  # seconds for gunicorn to answer /healthz
EXPECT_TIMEOUT = 10_000  # milliseconds for any one browser expectation


# The live server --------------------------------------------------------------------


@dataclass(frozen=True)
class LiveServer:
    """The running app: its base URL and the slot created to run right now."""

    url: str
    day: str  # the local (Asia/Jakarta) date of the slot, YYYY-MM-DD
    slot_label: str  # "HH:MM–HH:MM" as the pages print it


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# seed-demo's slots at every point: 07:00-12:00 local, 30 minutes each.
DEMO_FIRST, DEMO_LAST, DEMO_LENGTH = 7 * 60, 12 * 60, 30
EARLY_MINUTES = 15  # CHECKIN_EARLY_MINUTES default


def _running_slot_window(now: datetime) -> tuple[datetime, datetime, bool] | None:
    """Return the local (start, end, must_generate) of a slot to book and scan now.

    A seed-demo slot is used when the gate would admit it now and it is still bookable
    for 3 more minutes; otherwise a slot is generated around now, beside the demo slots
    (overlapping slots are refused). None in the last minutes of the day.
    """
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for minute in range(DEMO_FIRST, DEMO_LAST, DEMO_LENGTH):
        start = midnight + timedelta(minutes=minute)
        end = start + timedelta(minutes=DEMO_LENGTH)
        if start - timedelta(minutes=EARLY_MINUTES) <= now and end - now >= timedelta(minutes=3):
            return start, end, False
    demo_start = midnight + timedelta(minutes=DEMO_FIRST)
    demo_end = midnight + timedelta(minutes=DEMO_LAST)
    start = max((now - timedelta(minutes=7)).replace(second=0, microsecond=0), midnight)
    end = start + timedelta(minutes=30)
    if start < demo_start:
        end = min(end, demo_start)
    else:
        start = max(start, demo_end)
        end = min(start + timedelta(minutes=30), midnight + timedelta(hours=23, minutes=59))
    if end - now < timedelta(minutes=3) or end <= start:
        return None
    return start, end, True


def _slot_window() -> tuple[datetime, datetime, bool]:
    """A running slot window, waiting past local midnight when the day is nearly over."""
    now = now_local()
    window = _running_slot_window(now)
    if window is None:
        tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=5, microsecond=0)
        time.sleep((tomorrow - now).total_seconds())
        window = _running_slot_window(now_local())
    assert window is not None
    return window


def _app_env(instance: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in APP_SETTINGS}
    env.update(
        ANTRI_INSTANCE_PATH=str(instance),
        DATABASE_URL=f"sqlite:///{instance / 'antri.db'}",
        SECRET_KEY="browser-test-secret",
        NIK_HASH_KEY="browser-test-nik-key",
        FLASK_APP="app",
        PYTHONUNBUFFERED="1",
    )
    return env


def _flask(env: dict[str, str], *args: str) -> str:
    """Run ``flask ARGS`` in the repository; fail the test with its output on an error."""
    done = subprocess.run(
        [str(VENV_BIN / "flask"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"flask {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    return done.stdout


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(
                f"gunicorn exited {server.returncode} before answering:\n{log.read_text()}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
                last = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    pytest.fail(
        f"{url}/healthz did not answer 200 within {HEALTH_TIMEOUT:.0f} s ({last}):\n"
        f"{log.read_text()}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    """Antri under gunicorn on a free port: migrated, seeded, a slot running now, accounts."""
    instance = tmp_path_factory.mktemp("antri-browser")
    env = _app_env(instance)
    _flask(env, "db", "upgrade")
    _flask(env, "seed-demo", "--days", "1")
    start, end, must_generate = _slot_window()
    if must_generate:
        made = _flask(
            env,
            "slots",
            "generate",
            POINT_CODE,
            "--date",
            start.date().isoformat(),
            "--start",
            f"{start:%H:%M}",
            "--end",
            f"{end:%H:%M}",
            "--length",
            str((end - start) // timedelta(minutes=1)),
            "--capacity",
            "5",
        )
        assert "1 slots created" in made, made
    _flask(
        env,
        "users",
        "create",
        STAFF[0],
        "--role",
        "staff",
        "--point",
        POINT_CODE,
        "--password",
        STAFF[1],
    )
    _flask(env, "users", "create", BOSS[0], "--role", "supervisor", "--password", BOSS[1])

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = instance / "gunicorn.log"
    with log.open("w") as log_handle:
        server = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                *("-w", "2", "-b", f"127.0.0.1:{port}"),
                "--no-control-socket",  # gunicorn 27 would otherwise write to ~/.gunicorn/
                "app:create_app()",
            ],
            cwd=REPO,
            env=env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(url, server, log)
        yield LiveServer(url, start.date().isoformat(), f"{start:%H:%M}–{end:%H:%M}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


# The browser ------------------------------------------------------------------------


@dataclass
class Problems:
    """What the browser saw go wrong: console errors, page errors, HTTP 5xx answers."""

    seen: list[str] = field(default_factory=list)

    def watch(self, page: Page, who: str) -> Page:
        page.on("console", lambda message: self._console(who, message))
        page.on("pageerror", lambda error: self.seen.append(f"{who}: page error: {error}"))
        page.on("response", lambda response: self._response(who, response))
        return page

    def _console(self, who: str, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if "favicon.ico" in (message.location.get("url") or ""):
            return  # Antri has no favicon; Chromium asks anyway
        self.seen.append(f"{who}: console error: {message.text} ({message.location})")

    def _response(self, who: str, response: Response) -> None:
        if response.status >= 500:
            self.seen.append(f"{who}: HTTP {response.status} for {response.url}")


@pytest.fixture
def problems() -> Iterator[Problems]:
    found = Problems()
    yield found
    assert not found.seen, "the browser saw problems:\n" + "\n".join(found.seen)


def _open(browser: Browser, server: LiveServer, **options) -> BrowserContext:
    context = browser.new_context(base_url=server.url, locale="id-ID", **options)
    context.set_default_timeout(EXPECT_TIMEOUT)
    return context


def _shot(page: Page, name: str, taken: list[Path]) -> None:
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True)
    taken.append(path)


def _no_sideways_scroll(page: Page, width: int) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} scrolls sideways: {scroll_width} px > {width} px"


def _sign_in(page: Page, email: str, password: str) -> None:
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    page.get_by_role("button", name="Masuk").click()


def _scan(page: Page, typed: str) -> None:
    """Type into the focused field and press Enter, as a keyboard-mode scanner does."""
    expect(page.locator("#scan")).to_be_focused()
    page.keyboard.type(typed)
    page.keyboard.press("Enter")


# The journey ------------------------------------------------------------------------


def test_resident_books_staff_admit_supervisor_sees(browser, live_server, problems):
    """A new resident books and gets a QR ticket; staff admit it once; a supervisor sees it."""
    expect.set_options(timeout=EXPECT_TIMEOUT)
    SHOTS.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []

    # Resident, on a cheap phone, in Bahasa Indonesia.
    phone = _open(
        browser,
        live_server,
        viewport={"width": 360, "height": 740},
        is_mobile=True,
        has_touch=True,
    )
    page = problems.watch(phone.new_page(), "resident")
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "id")
    expect(page.get_by_role("heading", level=1)).to_have_text("Pesan jadwal pengambilan")
    _no_sideways_scroll(page, 360)
    _shot(page, "01-resident-home.png", taken)

    page.locator("#q").fill("Senen")
    page.get_by_role("button", name="Cari").click()
    expect(page).to_have_url(re.compile(r"[?&]q=Senen\b"))
    page.get_by_role("link", name=re.compile(re.escape(POINT_NAME))).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(POINT_NAME)
    slot_card = page.locator(".card.slot").filter(has_text=live_server.slot_label)
    expect(slot_card).to_have_count(1)
    _no_sideways_scroll(page, 360)
    _shot(page, "02-resident-point.png", taken)

    slot_card.get_by_role("link", name="Pesan").click()
    expect(page).to_have_url(re.compile(r"/slots/\d+/book$"))
    expect(page.locator(".card").first).to_contain_text(live_server.slot_label)
    page.locator("#name").fill(RESIDENT["name"])
    page.locator("#nik").fill(RESIDENT["nik"])
    page.locator("#phone").fill(RESIDENT["phone"])
    _no_sideways_scroll(page, 360)
    _shot(page, "03-resident-book.png", taken)
    page.get_by_role("button", name="Pesan dan dapatkan tiket").click()

    expect(page).to_have_url(re.compile(r"/tickets/[A-Z0-9]{8}/[0-9a-f]{20}\?new=1$"))
    code = page.locator("#booking-code")
    expect(code).to_have_text(BOOKING_CODE)
    booking_code = code.inner_text().strip()
    expect(page.locator("main")).to_contain_text(POINT_NAME)
    expect(page.locator("main")).to_contain_text(live_server.slot_label)
    expect(page.locator("main")).to_contain_text(RESIDENT["name"])
    qr = page.locator(".qr img")
    expect(qr).to_be_visible()
    # The image loads after the page: wait for it rather than sample it once.
    page.wait_for_function(
        "() => { const i = document.querySelector('.qr img');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=15_000,
    )
    png = page.request.get(qr.evaluate("img => img.src"))
    assert png.ok and png.headers["content-type"] == "image/png", png.status
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.body())))
    assert len(decoded) == 1 and decoded[0].format == zxingcpp.BarcodeFormat.QRCode, decoded
    ticket = decoded[0].text
    assert len(ticket) == 119, ticket  # a version 1 token (qr/tokens.py)
    _no_sideways_scroll(page, 360)
    _shot(page, "04-resident-ticket.png", taken)
    for link in ("#save-image", "#print", "#calendar", "#whatsapp"):
        expect(page.locator(link)).to_be_visible()
    assert page.locator("#whatsapp").get_attribute("href").startswith("https://wa.me/?text=")

    # Once loaded, the ticket stays readable with no network (service worker cache).
    cached = page.evaluate(
        """async () => {
            await navigator.serviceWorker.ready;
            for (let i = 0; i < 50; i++) {
                const keys = await (await caches.open('antri-tickets-v1')).keys();
                if (keys.length >= 2) return keys.length;
                await new Promise(r => setTimeout(r, 100));
            }
            return 0;
        }"""
    )
    assert cached >= 2, "the ticket page and its QR image should be in the offline cache"
    phone.set_offline(True)
    page.reload()
    expect(page.locator("#booking-code")).to_have_text(BOOKING_CODE)
    expect(page.locator(".qr img")).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('.qr img');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=15_000,
    )
    phone.set_offline(False)
    phone.close()

    # Staff at the gate, on a tablet, with a scanner that types.
    tablet = _open(browser, live_server, viewport={"width": 800, "height": 1280}, has_touch=True)
    page = problems.watch(tablet.new_page(), "staff")
    page.goto("/gate")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fgate$"))
    _sign_in(page, *STAFF)
    expect(page).to_have_url(f"{live_server.url}/gate")
    expect(page.get_by_role("heading", level=1)).to_contain_text(POINT_NAME)
    expect(page.locator("#inside-now")).to_have_text("0")

    _scan(page, ticket)
    result = page.locator("#result")
    expect(result).to_have_attribute("data-result", "admitted")
    expect(result).to_contain_text(booking_code)  # same XXXX-XXXX form as the ticket
    expect(page.locator("#inside-now")).to_have_text("1")
    page.wait_for_load_state()
    _shot(page, "05-gate-admit.png", taken)

    _scan(page, ticket)
    expect(result).to_have_attribute("data-reason", "already_checked_in")
    expect(result).to_have_attribute("data-result", "refused")
    expect(page.locator("#inside-now")).to_have_text("1")
    page.wait_for_load_state()
    _shot(page, "06-gate-refuse.png", taken)

    _scan(page, "ACDE-FGHJ")
    expect(result).to_have_attribute("data-reason", "unknown_ticket")
    expect(page.locator("#inside-now")).to_have_text("1")
    tablet.close()

    # Supervisor, at a desk.
    desk = _open(browser, live_server, viewport={"width": 1280, "height": 800})
    page = problems.watch(desk.new_page(), "supervisor")
    page.goto("/login")
    _sign_in(page, *BOSS)
    expect(page).to_have_url(f"{live_server.url}/supervisor")
    inside = page.locator(f'tr[data-point="{POINT_CODE}"] [data-inside]')
    expect(inside).to_have_attribute("data-inside", "1")
    expect(inside).to_have_text(f"1 / {SAFE_LIMIT}")
    _shot(page, "07-supervisor.png", taken)
    desk.close()

    refresh = os.environ.get("ANTRI_SCREENSHOTS")
    if refresh:
        Path(refresh).mkdir(parents=True, exist_ok=True)
        for path in taken:
            shutil.copy2(path, Path(refresh) / path.name)

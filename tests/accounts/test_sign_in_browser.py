"""The sign-in back-off in Debian's Chromium (issue 14 item 1): a stranger's failed
sign-ins are answered 429 with a clear message on the sign-in page, while the staff
member signs in from their own address. Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.test_browser import (
    CHROMIUM,
    REPO,
    UNDER_CI,
    VENV_BIN,
    LiveServer,
    _app_env,
    _flask,
    _free_port,
    _no_sideways_scroll,
    _open,
    _shot,
    _sign_in,
    _wait_healthy,
    problems,  # noqa: F401  (the fixture)
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not UNDER_CI,
        reason="Debian's Chromium is not installed at /usr/bin/chromium (make browser)",
    ),
]

SUPERVISOR = ("boss-limits@antri.test", "boss-pass-1")


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory) -> Iterator[LiveServer]:
    """Antri under gunicorn (one worker: the in-memory limit store is its own) with a
    sign-in budget of 2 failures a minute per account and address; one trusted proxy
    hop, so each browser context can come from its own address (X-Forwarded-For)."""
    instance = tmp_path_factory.mktemp("antri-sign-in-browser")
    env = _app_env(instance)
    env.update(LOGIN_LIMIT_PER_ACCOUNT="2/minute", PROXY_HOPS="1", RATELIMIT_ENABLED="true")
    _flask(env, "db", "upgrade")
    _flask(
        env, "users", "create", SUPERVISOR[0], "--role", "supervisor", "--password", SUPERVISOR[1]
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = instance / "gunicorn.log"
    with log.open("w") as log_handle:
        server = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                *("-w", "1", "-b", f"127.0.0.1:{port}", "--no-control-socket"),
                "app:create_app()",
            ],
            cwd=REPO,
            env=env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(url, server, log)
        yield LiveServer(url, "", "")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_a_stranger_is_slowed_and_staff_still_sign_in(browser, limited_server, problems):  # noqa: F811
    taken: list[Path] = []
    stranger = _open(
        browser,
        limited_server,
        viewport={"width": 360, "height": 740},
        extra_http_headers={"X-Forwarded-For": "10.20.0.9"},
    )
    # Not watched: its 400 and 429 answers are what this test wants (Chromium logs them).
    page = stranger.new_page()
    page.on("pageerror", lambda error: pytest.fail(f"page error: {error}"))
    page.goto("/login")
    for _ in range(2):
        _sign_in(page, SUPERVISOR[0], "wrong-guess")
        expect(page.locator(".flash.error")).to_have_text("Email atau kata sandi salah.")
    _sign_in(page, SUPERVISOR[0], SUPERVISOR[1])  # the right one, but from here: wait
    # The wait is the limit's window left, a whole minute or two (the window's edge).
    expect(page.locator(".flash.error")).to_have_text(
        re.compile(
            r"Terlalu banyak percobaan masuk yang gagal\. Tunggu [12] menit, lalu coba lagi\."
        )
    )
    expect(page.locator("#email")).to_have_value(SUPERVISOR[0])
    expect(page.locator("#password")).to_have_value("")
    _no_sideways_scroll(page, 360)
    _shot(page, "h14-sign-in-limited.png", taken)
    page.goto("/login?lang=en")
    page.locator("#email").fill(SUPERVISOR[0])
    page.locator("#password").fill("wrong-again")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".flash.error")).to_have_text(
        re.compile(r"Too many failed sign-ins\. Please wait (1 minute|2 minutes) and try again\.")
    )
    _shot(page, "h14-sign-in-limited-en.png", taken)
    stranger.close()

    own = _open(browser, limited_server, extra_http_headers={"X-Forwarded-For": "10.20.0.1"})
    page = problems.watch(own.new_page(), "supervisor")
    page.goto("/login")
    _sign_in(page, *SUPERVISOR)
    expect(page).to_have_url(f"{limited_server.url}/supervisor")
    own.close()
    assert all(path.stat().st_size > 0 for path in taken)

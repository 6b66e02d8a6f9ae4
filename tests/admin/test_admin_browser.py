"""An admin sets up a market operation in Debian's Chromium: a schedule with a publish
time, its preview, its slots; then closes one slot. The residents' page shows the slots
only once they open. Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from common.timeutil import day_text
from tests.clock import today_local
from tests.test_browser import (
    CHROMIUM,
    POINT_CODE,
    REPO,
    SHOTS,
    UNDER_CI,
    VENV_BIN,
    LiveServer,
    _app_env,
    _flask,
    _free_port,
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

ADMIN = ("admin-ui@antri.test", "admin-pass-1")
JAKARTA = ZoneInfo("Asia/Jakarta")


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory) -> Iterator[LiveServer]:
    """Antri under gunicorn, seeded, with an admin account."""
    instance = tmp_path_factory.mktemp("antri-admin-browser")
    env = _app_env(instance)
    _flask(env, "db", "upgrade")
    _flask(env, "seed-demo", "--days", "1")
    _flask(env, "users", "create", ADMIN[0], "--role", "admin", "--password", ADMIN[1])
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = instance / "gunicorn.log"
    with log.open("w") as log_handle:
        server = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                *("-w", "2", "-b", f"127.0.0.1:{port}", "--no-control-socket"),
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


def test_admin_creates_a_schedule_previews_and_publishes_it(browser, admin_server, problems):  # noqa: F811
    SHOTS.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []
    context = _open(browser, admin_server, viewport={"width": 1280, "height": 900})
    page = problems.watch(context.new_page(), "admin")
    page.goto("/login")
    _sign_in(page, *ADMIN)
    page.get_by_role("link", name="Admin").click()
    page.get_by_role("link", name="Pola jadwal").click()

    # Tomorrow afternoon, opening for booking today at 00:00 (already open) and the day
    # after tomorrow, opening tomorrow at 07:00 (not open yet).
    today = today_local()
    page.locator("#point").select_option(POINT_CODE)
    page.locator("#name").fill("Operasi pasar sore")
    page.locator("#start_time").fill("15:00")
    page.locator("#end_time").fill("16:00")
    page.locator("#slot_minutes").fill("30")
    page.locator("#capacity").fill("12")
    page.locator("#valid_from").fill((today + timedelta(days=1)).isoformat())
    page.locator("#valid_until").fill((today + timedelta(days=2)).isoformat())
    page.locator("#publish_days_before").fill("1")
    page.locator("#publish_time").fill("00:00")
    for day in page.locator("input[name=weekdays]").all():
        day.check()
    _shot(page, "12-admin-schedule-form.png", taken)
    page.get_by_role("button", name="Simpan dan pratinjau").click()

    expect(page.locator("h1")).to_contain_text("Pasar Senen")
    expect(page.get_by_text("4 jadwal direncanakan: 4 baru, 0 sudah ada.")).to_be_visible()
    rows = page.locator("table tr")
    expect(rows).to_have_count(5)
    expect(rows.nth(1)).to_contain_text("15:00–15:30")
    expect(rows.nth(1)).to_contain_text(f"{day_text(today, locale='id')} 00:00 WIB")
    tomorrow = day_text(today + timedelta(days=1), locale="id")
    expect(rows.nth(3)).to_contain_text(f"{tomorrow} 00:00 WIB")
    _shot(page, "13-admin-schedule-preview.png", taken)
    page.get_by_role("button", name="Buat 4 jadwal").click()
    expect(page.get_by_text("4 jadwal dibuat, 0 sudah ada.")).to_be_visible()
    expect(page.get_by_role("button", name="Buat 0 jadwal")).to_be_disabled()

    # The resident's page: tomorrow's slots are bookable now, the day after's are not yet.
    resident = problems.watch(context.new_page(), "resident")
    resident.goto(f"/points/{POINT_CODE}?date={today + timedelta(days=1)}")
    expect(resident.get_by_text("15:00–15:30")).to_be_visible()
    resident.goto(f"/points/{POINT_CODE}?date={today + timedelta(days=2)}")
    expect(resident.get_by_text("15:00–15:30")).to_have_count(0)

    # Close one slot from the slots page: it disappears for residents.
    page.get_by_role("link", name="Jadwal", exact=True).click()
    page.locator("select[name=point]").select_option(POINT_CODE)
    page.locator("input[type=date][name=date]").fill((today + timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Tampilkan").click()
    row = page.locator("tr", has_text="15:30–16:00")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Tutup").click()
    expect(page.get_by_text("Jadwal ditutup: 0 pemesanan dibatalkan.")).to_be_visible()
    _shot(page, "14-admin-slots.png", taken)
    resident.goto(f"/points/{POINT_CODE}?date={today + timedelta(days=1)}")
    expect(resident.get_by_text("15:00–15:30")).to_be_visible()
    expect(resident.get_by_text("15:30–16:00")).to_have_count(0)

    page.get_by_role("link", name="Catatan audit").click()
    expect(page.locator("table")).to_contain_text("schedule.create")
    expect(page.locator("table")).to_contain_text("schedule.generate")
    expect(page.locator("table")).to_contain_text("slot.close")
    _shot(page, "15-admin-audit.png", taken)
    context.close()
    assert all(path.stat().st_size > 10_000 for path in taken)

"""One date style per language on every page, and no stored code shown as a word
(issue 14 item 12). The pages are rendered by the app in both languages for a slot on a
fixed day, Thursday 14 January 2027, 09:00-09:30 in Jakarta, and the exact text read.
"""

from __future__ import annotations

import html
import re
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

import admin.assist
from extensions import db
from slots.models import BOOKING_STATUSES, NOTICE_KINDS, Notice

JAKARTA = ZoneInfo("Asia/Jakarta")
# The morning of the slot's day: the assisted-booking list reads the clock.
MORNING = datetime(2027, 1, 14, 6, 0, tzinfo=JAKARTA)
PASSWORD = "correct-horse-1"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

DAY = {"id": "Kamis, 14 Jan 2027", "en": "Thu 14 Jan 2027"}


def test_the_one_style_per_language():
    from common.timeutil import clock_text, day_text, when_text

    day = date(2027, 1, 14)
    instant = datetime(2027, 1, 14, 2, 5, 9, tzinfo=ZoneInfo("UTC"))
    assert day_text(day, locale="id") == "Kamis, 14 Jan 2027"
    assert day_text(day, locale="en") == "Thu 14 Jan 2027"
    assert day_text(day, short=True, locale="id") == "Kam, 14 Jan"
    assert day_text(day, short=True, locale="en") == "Thu 14 Jan"
    assert day_text(date(2026, 12, 4), locale="id") == "Jumat, 4 Des 2026"
    assert day_text(date(2026, 8, 17), locale="id") == "Senin, 17 Agu 2026"
    assert day_text(instant, "Asia/Jakarta", locale="en") == "Thu 14 Jan 2027"
    # 23:30 UTC on the 13th is already the 14th in Jakarta.
    late = datetime(2027, 1, 13, 23, 30, tzinfo=ZoneInfo("UTC"))
    assert day_text(late, "Asia/Jakarta", locale="id") == "Kamis, 14 Jan 2027"
    assert clock_text(instant, "Asia/Jakarta") == "09:05"
    assert clock_text(instant, "Asia/Jakarta", seconds=True) == "09:05:09"
    assert (
        when_text(instant, "Asia/Jakarta", zone_name=True, locale="id")
        == "Kamis, 14 Jan 2027 09:05 WIB"
    )
    with pytest.raises(ValueError):
        day_text(instant)  # an instant's day needs a zone


def test_no_template_formats_a_date_by_itself():
    """Every date and time on a page goes through the ``day``/``clock``/``when`` filters."""
    offenders = [
        f"{path.relative_to(TEMPLATES)}: {match.group(0)}"
        for path in TEMPLATES.rglob("*.html")
        for match in re.finditer(
            r"strftime\(|format_date\(|format_datetime\(|\|local\b", path.read_text()
        )
    ]
    assert offenders == []


def test_every_stored_code_has_a_word():
    from common.labels import LABELS, label
    from slots.models import (
        EXPIRED,
        LEFT,
        NOTICE_FAILED,
        NOTICE_PENDING,
        NOTICE_SENDING,
        NOTICE_SENT,
        NOTICE_VOID,
        PROMOTED,
        SKIPPED,
        WAITING,
    )

    codes = {
        *BOOKING_STATUSES,
        *NOTICE_KINDS,
        WAITING, PROMOTED, LEFT, SKIPPED, EXPIRED,
        NOTICE_PENDING, NOTICE_SENDING, NOTICE_SENT, NOTICE_FAILED, NOTICE_VOID,
        "staff", "supervisor", "admin",
    }  # fmt: skip
    assert codes <= set(LABELS)
    assert label("mystery") == "mystery"


@pytest.fixture
def scene(client, make_point, make_slot, make_user, nik, monkeypatch):
    """A point, a slot on Thursday 14 January 2027 at 09:00 WIB with one booking (its
    confirmation message failed), and an admin, a supervisor and a staff member."""
    point = make_point("JKT-900", name="Pasar Uji", city="Jakarta Pusat")
    slot = make_slot(capacity=5, starts_in=180, minutes=30, point=point, now=MORNING)
    make_user("kepala@antri.test", "admin")
    make_user("sari@antri.test", "supervisor")
    make_user("budi@antri.test", "staff", point)
    answer = client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Siti", "nik": nik(), "phone": "081234567890"},
    )
    assert answer.status_code == 201, answer.text
    notice = db.session.scalar(select(Notice))
    notice.status = "failed"
    notice.last_error = "gateway down"
    db.session.commit()
    monkeypatch.setattr(admin.assist, "utcnow", lambda: MORNING)
    return {"slot": slot, "ticket": urlsplit(answer.json["ticket_url"])}


def _sign_in(client, email: str) -> None:
    answer = client.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 302, answer.text


def _text(page: str) -> str:
    """A page's visible words: no tags, scripts, styles or audit-record dumps."""
    page = re.sub(r"<(script|style|pre)\b.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def _get(client, path: str, language: str) -> str:
    joiner = "&" if "?" in path else "?"
    answer = client.get(f"{path}{joiner}lang={language}")
    assert answer.status_code == 200, (path, answer.status_code)
    return _text(answer.text)


@pytest.mark.parametrize("language", ["id", "en"])
def test_pages_write_the_day_the_same_way(client, scene, language):
    day = DAY[language]
    slot_id = scene["slot"].id
    ticket = scene["ticket"]
    left = {"id": "Sisa 4 tempat", "en": "4 places left"}[language]

    # Residents: the market page, the booking form, the ticket.
    assert f"{day}" in _get(client, "/points/JKT-900?date=2027-01-14", language)
    assert f"{day}, 09:00–09:30" in _get(client, f"/slots/{slot_id}/book", language)
    assert f"{day} 09:00–09:30 WIB" in _get(client, f"{ticket.path}?{ticket.query}", language)

    _sign_in(client, "kepala@antri.test")
    # Assisted booking: the day, the hours and what the count means.
    assert f"{day} · 09:00–09:30 · {left}" in _get(client, "/admin/assist?point=JKT-900", language)
    assert f"Pasar Uji · {day}" in _get(
        client, "/admin/slots?point=JKT-900&date=2027-01-14", language
    )
    assert f"{day}" in _get(client, "/supervisor/points/JKT-900?date=2027-01-14", language)
    # The account list dates its tokens, the audit log its entries, in the same style.
    accounts = _get(client, "/admin/accounts", language)
    assert re.search(
        {"id": r"(Senin|Selasa|Rabu|Kamis|Jumat|Sabtu|Minggu), \d{1,2} \w{3} \d{4} \d\d:\d\d WIB",
         "en": r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{1,2} \w{3} \d{4} \d\d:\d\d WIB"}[language],
        accounts,
    )  # fmt: skip
    assert not re.search(r"\d{4}-\d\d-\d\d", accounts)


ENGLISH_CODES = re.compile(
    r"\b(confirmed|checked_in|checked_out|cancelled|no_show|pending|sending|sent|failed|void"
    r"|confirmation|reminder|cancellation|promotion|slot_closed|slot_moved"
    r"|staff|supervisor|admin)\b"
)


def test_indonesian_admin_pages_show_no_english_status_or_role(client, scene):
    _sign_in(client, "kepala@antri.test")
    pages = {
        path: _get(client, path, "id")
        for path in (
            "/admin/",
            "/admin/accounts",
            "/admin/notices",
            "/admin/slots?point=JKT-900&date=2027-01-14",
            "/admin/schedules",
            "/admin/audit",
            "/admin/assist?point=JKT-900",
            "/supervisor",
            "/supervisor/points/JKT-900?date=2027-01-14",
        )
    }
    found = {path: ENGLISH_CODES.findall(text) for path, text in pages.items()}
    assert {path: words for path, words in found.items() if words} == {}
    # The words are there, in Indonesian.
    assert "Petugas pintu masuk" in pages["/admin/accounts"]
    assert "Pengawas" in pages["/admin/accounts"]
    assert "Gagal" in pages["/admin/notices"]
    assert "Pemesanan dikonfirmasi" in pages["/admin/notices"]

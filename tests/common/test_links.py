"""Absolute links come from PUBLIC_BASE_URL, never from the request's Host (issue 14 item 3)."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import pytest

from slots.models import Booking, Notice

PUBLIC = "https://antri.example.id"
FORGED = {"Host": "evil.example:6666", "X-Forwarded-Host": "evil.example"}


@pytest.fixture
def public(app, monkeypatch):
    """The suite's app as deployed: no SERVER_NAME (requests come under any host name),
    and a public address unlike any test host."""
    monkeypatch.setitem(app.config, "SERVER_NAME", None)
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", PUBLIC)
    return PUBLIC


def _book(client, slot_id, nik, **headers):
    answer = client.post(
        "/api/v1/bookings",
        json={"slot_id": slot_id, "name": "Siti", "nik": nik, "phone": "081234567890"},
        headers=headers,
    )
    assert answer.status_code == 201, answer.json
    return answer.json


def test_booking_links_ignore_a_forged_host(public, client, make_slot, nik):
    slot = make_slot(capacity=5, starts_in=24 * 60)
    booked = _book(client, slot.id, nik(), **FORGED)
    code = booked["code"]
    paths = {
        "ticket_url": "",
        "qr_png_url": "/qr.png",
        "qr_svg_url": "/qr.svg",
        "pdf_url": "/ticket.pdf",
        "ics_url": "/ticket.ics",
    }
    for field, tail in paths.items():
        assert re.fullmatch(rf"{PUBLIC}/tickets/{code}/[0-9a-f]{{20}}{tail}", booked[field]), field


def test_ticket_page_share_link_and_calendar_ignore_a_forged_host(public, client, make_slot, nik):
    slot = make_slot(capacity=5, starts_in=24 * 60)
    booked = _book(client, slot.id, nik())
    path = urlsplit(booked["ticket_url"]).path
    page = client.get(path, headers=FORGED)
    assert page.status_code == 200
    share = re.search(r'id="whatsapp" href="https://wa\.me/\?text=([^"]+)"', page.text).group(1)
    assert unquote(share).endswith(f" {PUBLIC}{path}")
    ics = client.get(urlsplit(booked["ics_url"]).path, headers=FORGED)
    assert f"{PUBLIC}{path}" in ics.text.replace("\r\n ", "")  # folded lines joined
    assert "evil" not in page.text + ics.text


def test_message_links_use_the_public_address(public, app, client, make_slot, nik):
    from notify.messages import render_notice

    slot = make_slot(capacity=5, starts_in=24 * 60)
    booked = _book(client, slot.id, nik(), **FORGED)
    booking = Booking.query.filter_by(code=booked["code"]).one()
    notice = Notice.query.filter_by(booking_id=booking.id, kind="confirmation").one()
    text = render_notice(notice)
    assert text.endswith(booked["ticket_url"])
    assert booked["ticket_url"].startswith(f"{PUBLIC}/tickets/")


def test_a_base_url_with_a_path_keeps_it(public, app, client, make_slot, nik, monkeypatch):
    """Behind a proxy that serves Antri under /antri, links carry the prefix."""
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://example.id/antri")
    slot = make_slot(capacity=5, starts_in=24 * 60)
    booked = _book(client, slot.id, nik())
    assert booked["ticket_url"].startswith(f"https://example.id/antri/tickets/{booked['code']}/")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://127.0.0.1:5077", "http://127.0.0.1:5077"),
        ("https://antri.example.id/", "https://antri.example.id"),
        (" https://example.id/antri/ ", "https://example.id/antri"),
    ],
)
def test_public_base_url_is_read_without_its_trailing_slash(tmp_path, raw, expected):
    from config import load_config

    assert load_config(tmp_path, {"PUBLIC_BASE_URL": raw})["PUBLIC_BASE_URL"] == expected


@pytest.mark.parametrize(
    "raw", ["antri.example.id", "ftp://antri.example.id", "http://:80", "https://x.id/?a=1"]
)
def test_a_malformed_public_base_url_stops_the_start(tmp_path, raw):
    from config import ConfigError, load_config

    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        load_config(tmp_path, {"PUBLIC_BASE_URL": raw})

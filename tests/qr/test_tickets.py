"""Tickets that every scanner reads and nobody can forge: tokens, keys, QR, PDF, ICS."""

from __future__ import annotations

import base64
import io
import os
import random
import shutil
import subprocess
from datetime import datetime, timedelta

import pytest
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from defusedxml import ElementTree
from icalendar import Calendar
from PIL import Image

from common.timeutil import UTC
from qr.errors import TicketError
from qr.keys import load_keyring
from qr.printable import TicketFacts, ticket_pdf
from qr.render import qr_png, qr_svg
from qr.tokens import TicketClaims, make_token, verify_token

ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
START = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
NEEDS_POPPLER = pytest.mark.skipif(
    shutil.which("pdftoppm") is None and os.environ.get("CI") != "true",
    reason="poppler-utils not installed (make browser installs it)",
)


@pytest.fixture
def ring(tmp_path):
    return load_keyring(tmp_path / "keys")


def _token(ring, booking_id=4242):
    claims = TicketClaims(ring.signing_kid, booking_id, 3, START, START + timedelta(minutes=30))
    return make_token(claims, ring.signing_key), claims


def test_every_single_character_change_is_refused(ring):
    token, claims = _token(ring)
    assert verify_token(token, ring.public_keys) == claims
    rng = random.Random(7)
    for position, original in enumerate(token):
        for replacement in rng.sample([c for c in ALPHANUMERIC if c != original], 3):
            altered = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(TicketError):
                verify_token(altered, ring.public_keys)


@pytest.mark.parametrize("length", [1, 17, 119, 250, 600, 1200])
def test_qr_round_trips_across_payload_lengths(length):
    rng = random.Random(length)
    payload = "".join(rng.choice(ALPHANUMERIC) for _ in range(length)).strip() or "A"
    image = Image.open(io.BytesIO(qr_png(payload)))
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [payload]


def test_qr_png_has_quiet_zone_and_dark_on_light(ring):
    token, _ = _token(ring)
    image = Image.open(io.BytesIO(qr_png(token, box_size=8, border=4))).convert("L")
    quiet = image.crop((0, 0, image.width, 4 * 8))
    assert quiet.getextrema() == (255, 255)  # four white modules at the top edge
    assert image.getpixel((4 * 8 + 1, 4 * 8 + 1)) == 0  # finder pattern corner is black


def test_qr_svg_is_black_on_white_with_quiet_zone(ring):
    token, _ = _token(ring)
    root = ElementTree.fromstring(qr_svg(token))
    ns = "{http://www.w3.org/2000/svg}"
    size = int(root.get("viewBox").split()[2])
    assert size == 37 + 2 * 4  # a version 5 code (37 modules) and 4 quiet modules a side
    assert root.find(f"{ns}rect").get("fill") == "white"
    path = root.find(f"{ns}path")
    assert path.get("fill") in (None, "black", "#000000")
    coordinates = [int(part.split(",")[0]) for part in path.get("d").split("M")[1:] if "," in part]
    assert min(coordinates) == 4 and max(coordinates) == size - 5


def test_ics_has_the_slot_in_utc(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=180)
    booked = client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Siti Aminah", "nik": nik(), "phone": "081234567890"},
    ).json
    ics = client.get(booked["ics_url"])
    assert ics.status_code == 200 and ics.mimetype == "text/calendar"
    event = next(iter(Calendar.from_ical(ics.data).walk("VEVENT")))
    assert event.decoded("dtstart") == slot.starts_at
    assert event.decoded("dtend") == slot.ends_at
    assert b"DTSTART:" in ics.data and ics.data.count(b"Z\r\n") >= 2  # UTC, no zone rules
    assert slot.market_point.name in str(event.get("summary"))


@NEEDS_POPPLER
@pytest.mark.parametrize(
    "name",
    ["Nguyễn Thị Minh Khai", "李小龍", "عبد الله", "O'Brien 😀 Jr.", "Ñandú Çelik Øster"],
)
def test_pdf_prints_any_name_and_a_scannable_qr(ring, tmp_path, name):
    token, _ = _token(ring)
    facts = TicketFacts(
        code="ACDEFGHJ",
        token=token,
        name=name,
        nik_last4="0001",
        point_name="Pasar Senen Blok III - VI",
        point_address="Jl. Pasar Senen Raya",
        starts_at=START.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Jakarta")),
        ends_at=(START + timedelta(minutes=30)).astimezone(
            __import__("zoneinfo").ZoneInfo("Asia/Jakarta")
        ),
        ticket_url="http://antri.test/t",
    )
    labels = dict.fromkeys(("title", "code", "when", "name", "show", "keep"), "x")
    pdf = tmp_path / "ticket.pdf"
    pdf.write_bytes(ticket_pdf(facts, labels))
    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    if "عبد" in name:  # Arabic is shaped and stored in display order
        assert "عبد" in text or "دبع" in text or "ﻋﺒﺪ" in text
    else:  # an emoji no font can draw would print as "?"
        assert name in text or name.replace("😀", "?") in text
    assert "ACDE-FGHJ" in text and "08:30" in text
    subprocess.run(["pdftoppm", "-png", "-r", "150", str(pdf), str(tmp_path / "page")], check=True)
    page = next(tmp_path.glob("page*.png"))
    assert [r.text for r in zxingcpp.read_barcodes(Image.open(page))] == [token]


def test_booking_links_and_published_keys_verify_offline(client, make_slot, nik):
    slot = make_slot(capacity=3, starts_in=180)
    booked = client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Siti Aminah", "nik": nik(), "phone": "081234567890"},
    ).json
    pdf = client.get(booked["pdf_url"])
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert client.get(booked["qr_svg_url"]).mimetype == "image/svg+xml"
    keys = client.get("/api/v1/keys").json["keys"]
    assert [k["signing"] for k in keys] == [True]
    published = {
        k["kid"]: Ed25519PublicKey.from_public_bytes(
            base64.urlsafe_b64decode(k["public_key"] + "=" * (-len(k["public_key"]) % 4))
        )
        for k in keys
    }
    claims = verify_token(booked["ticket"], published)  # only the public keys needed
    assert claims.market_point_id == slot.market_point_id
    assert (claims.slot_starts_at, claims.slot_ends_at) == (slot.starts_at, slot.ends_at)


def test_rotation_keeps_old_tickets_until_the_key_is_retired(
    app, client, make_slot, make_user, nik, tmp_path, monkeypatch
):
    monkeypatch.setitem(app.config, "TICKET_KEY_DIR", str(tmp_path / "rotating-keys"))
    slot = make_slot(capacity=5, starts_in=-5)
    _, token = make_user("gate@antri.test", "staff", slot.market_point)
    headers = {"Authorization": f"Bearer {token}"}

    def book():
        return client.post(
            "/api/v1/bookings",
            json={"slot_id": slot.id, "name": "Rina", "nik": nik(), "phone": "081234567890"},
        ).json

    old = book()
    runner = app.test_cli_runner()
    rotated = runner.invoke(args=["tickets", "rotate-key"])
    assert rotated.exit_code == 0 and "key 2 now signs" in rotated.output
    new = book()
    assert new["ticket"] != old["ticket"]
    refused = runner.invoke(args=["tickets", "retire-key", "1"])
    assert refused.exit_code != 0 and "not ended" in refused.output
    assert runner.invoke(args=["tickets", "retire-key", "2"]).exit_code != 0  # signing key
    first = client.post("/api/v1/checkin", json={"ticket": old["ticket"]}, headers=headers)
    assert first.json["result"] == "admitted"  # an old ticket still verifies

    assert runner.invoke(args=["tickets", "retire-key", "1", "--force"]).exit_code == 0
    retired = client.post("/api/v1/checkin", json={"ticket": old["ticket"]}, headers=headers)
    assert retired.json["reason"] == "unknown_key"
    fresh = client.post("/api/v1/checkin", json={"ticket": new["ticket"]}, headers=headers)
    assert fresh.json["result"] == "admitted"
    assert [k["kid"] for k in client.get("/api/v1/keys").json["keys"]] == [2]


def test_signing_key_from_the_environment(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from app import create_app
    from qr.service import keyring, public_keys_json

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
            "TICKET_PRIVATE_KEY": pem,
            "TICKET_KEY_ID": 7,
            "TICKET_KEY_DIR": str(tmp_path / "keys"),
        }
    )
    with app.app_context():
        ring = keyring()
        assert ring.signing_kid == 7
        assert [k["kid"] for k in public_keys_json()] == [7]
        token = make_token(
            TicketClaims(7, 1, 1, START, START + timedelta(minutes=30)), ring.signing_key
        )
        assert verify_token(token, {7: key.public_key()}).booking_id == 1
    assert not (tmp_path / "keys").exists()  # nothing generated on disk


def test_a_damaged_key_file_stops_ticket_work_with_503(
    app, client, make_slot, nik, tmp_path, monkeypatch
):
    keys = tmp_path / "damaged-keys"
    keys.mkdir()
    (keys / "ed25519-1.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n")
    monkeypatch.setitem(app.config, "TICKET_KEY_DIR", str(keys))
    app.extensions.pop("antri_keyring", None)
    slot = make_slot(capacity=2, starts_in=120)
    response = client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Siti", "nik": nik(), "phone": "081234567890"},
    )
    assert response.status_code == 503
    assert response.json["error"] == "ticket_keys_unavailable"
    assert client.get("/api/v1/keys").status_code == 503

    from slots.models import Booking

    assert db_count(Booking) == 0
    app.extensions.pop("antri_keyring", None)


def db_count(model) -> int:
    from sqlalchemy import func, select

    from extensions import db

    return db.session.scalar(select(func.count(model.id)))


def test_a_cancelled_booking_has_no_usable_ticket_files(client, make_slot, nik):
    slot = make_slot(capacity=2, starts_in=24 * 60)
    booked = client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Siti", "nik": nik(), "phone": "081234567890"},
    ).json
    client.post(f"/api/v1/bookings/{booked['code']}/cancel", json={"phone": "081234567890"})
    for url in ("qr_png_url", "qr_svg_url", "pdf_url", "ics_url"):
        assert client.get(booked[url]).status_code == 410, url
    assert client.get(booked["ticket_url"]).status_code == 200  # the page says cancelled


def test_non_ascii_look_alikes_are_not_a_ticket(ring):
    """'ı'.upper() is 'I' and 'ſ'.upper() is 'S': such a twin must not verify."""
    token, _ = _token(ring)
    for look_alike in ("ı", "ſ"):
        twisted = token[:5] + look_alike + token[6:]
        with pytest.raises(TicketError):
            verify_token(twisted, ring.public_keys)


def test_cli_will_not_rotate_a_key_given_by_the_environment(app, monkeypatch):
    monkeypatch.setitem(app.config, "TICKET_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----")
    result = app.test_cli_runner().invoke(args=["tickets", "rotate-key"])
    assert result.exit_code != 0 and "TICKET_PRIVATE_KEY" in result.output

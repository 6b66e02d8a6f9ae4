"""Ticket tokens and QR images, without a database."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
import qrcode
import zxingcpp
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M

from common.timeutil import UTC
from qr.errors import InvalidFormat, InvalidSignature, UnknownKey
from qr.keys import load_keyring
from qr.render import qr_png
from qr.tokens import TOKEN_LENGTH, TicketClaims, make_token, verify_token

START = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)  # 08:30 WIB


@pytest.fixture
def ring(tmp_path):
    return load_keyring(tmp_path / "keys")


@pytest.mark.parametrize(
    "claims",
    [
        TicketClaims(1, 1, 1, START, START + timedelta(minutes=30)),
        TicketClaims(65535, 2**32 - 1, 65535, START, START + timedelta(minutes=65535)),
    ],
)
def test_round_trip_and_size(ring, claims):
    claims = TicketClaims(ring.signing_kid, *list(claims.__dict__.values())[1:])
    token = make_token(claims, ring.signing_key)
    assert len(token) == TOKEN_LENGTH
    assert set(token) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    assert verify_token(token, ring.public_keys) == claims
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    code.add_data(token)
    code.make(fit=True)
    assert code.version <= 7


def test_png_decodes_back_even_small_and_lossy(ring):
    token = make_token(
        TicketClaims(ring.signing_kid, 12345, 3, START, START + timedelta(minutes=30)),
        ring.signing_key,
    )
    image = Image.open(io.BytesIO(qr_png(token))).convert("RGB")
    assert [r.text for r in zxingcpp.read_barcodes(image)] == [token]
    small = image.resize((200, 200 * image.height // image.width))
    lossy = io.BytesIO()
    small.save(lossy, format="JPEG", quality=40)
    assert [r.text for r in zxingcpp.read_barcodes(Image.open(lossy))] == [token]


def test_verification_reasons(ring, tmp_path):
    claims = TicketClaims(ring.signing_kid, 9, 3, START, START + timedelta(minutes=30))
    token = make_token(claims, ring.signing_key)
    with pytest.raises(InvalidFormat):
        verify_token(token[:-1], ring.public_keys)
    with pytest.raises(InvalidFormat):
        verify_token("", ring.public_keys)
    other = load_keyring(tmp_path / "other")
    with pytest.raises(InvalidSignature):
        verify_token(make_token(claims, other.signing_key), ring.public_keys)
    with pytest.raises(UnknownKey):
        verify_token(token, {})
    assert verify_token(token + "\r\n", ring.public_keys) == claims


def test_keyring_is_created_once_and_reused(tmp_path):
    first = load_keyring(tmp_path / "k")
    second = load_keyring(tmp_path / "k")
    assert first.signing_kid == second.signing_kid == 1
    probe = b"x"
    second.public_keys[1].verify(first.signing_key.sign(probe), probe)

"""Issue 14 item 5: a market CSV in the encodings spreadsheet programs write is read
the same by ``flask points import`` and the admin upload (one decoding function,
``slots.points.decode_csv_bytes``); anything else is refused clearly: exit code 1 and
a message at the command line, never a traceback. Real bytes files on disk."""

from __future__ import annotations

import codecs
import io

import pytest
from sqlalchemy import select

from extensions import db
from slots.models import MarketPoint
from slots.points import POINT_CSV_COLUMNS
from tests.admin.test_admin import admin, login  # noqa: F401  (admin is a fixture)

HEADER = ",".join(POINT_CSV_COLUMNS) + "\r\n"
# Accents and the signs Windows-1252 has beyond Latin-1 (the euro, curly quotes).
NAME = "Pasar Cikini “Baru” – Café €"
ROW = f"{NAME},Jl. Kramat Raya,Menteng,Jakarta Pusat,-6.19,106.84,317101,701,\r\n"
TEXT = HEADER + ROW

# What each program writes (the bytes, not a Python string): Excel "CSV UTF-8" (BOM),
# LibreOffice and Google Sheets (no BOM), Excel "CSV (Comma delimited)" on Windows.
ACCEPTED = {
    "utf-8": TEXT.encode("utf-8"),
    "utf-8-bom": codecs.BOM_UTF8 + TEXT.encode("utf-8"),
    "windows-1252": TEXT.encode("cp1252"),
    "utf-16-bom": TEXT.encode("utf-16"),
}
LATIN_1 = (HEADER + "Pasar Café Señor,,Menteng,Jakarta Pusat,,,317101,702,\r\n").encode("latin-1")
REFUSED = {
    # An Excel workbook saved under a .csv name: a zip with NUL bytes.
    "xlsx": b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)),
    # Bytes Windows-1252 leaves undefined, in what is neither UTF-8 nor Windows-1252.
    "undefined-bytes": HEADER.encode() + b"Pasar \x81\x8d\x8f\x90\x9d,,,,,,,703,\r\n",
}


@pytest.mark.parametrize("encoding", sorted(ACCEPTED))
def test_cli_import_reads_the_spreadsheet_encodings(ctx, tmp_path, encoding):
    path = tmp_path / f"points-{encoding}.csv"
    path.write_bytes(ACCEPTED[encoding])
    result = ctx.test_cli_runner().invoke(args=["points", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 market points created, 0 updated" in result.output
    point = db.session.scalar(select(MarketPoint).where(MarketPoint.code == "JKT-701"))
    assert (point.name, point.kecamatan) == (NAME, "Menteng")


def test_cli_import_reads_latin_1(ctx, tmp_path):
    path = tmp_path / "latin-1.csv"
    path.write_bytes(LATIN_1)
    result = ctx.test_cli_runner().invoke(args=["points", "import", str(path)])
    assert result.exit_code == 0, result.output
    point = db.session.scalar(select(MarketPoint).where(MarketPoint.code == "JKT-702"))
    assert point.name == "Pasar Café Señor"


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_cli_import_refuses_other_bytes_clearly(ctx, tmp_path, kind):
    path = tmp_path / f"{kind}.csv"
    path.write_bytes(REFUSED[kind])
    result = ctx.test_cli_runner().invoke(args=["points", "import", str(path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "Error: invalid_market_point:" in result.output
    assert "UTF-8" in result.output and "reason=encoding" in result.output
    assert db.session.scalar(select(MarketPoint)) is None


def test_upload_and_cli_decode_the_same(ctx, client, admin):  # noqa: F811
    login(client, "admin@antri.test")
    data = {"file": (io.BytesIO(ACCEPTED["windows-1252"]), "points.csv")}
    page = client.post("/admin/points/import", data=data, follow_redirects=True)
    assert page.status_code == 200 and "1 dibuat, 0 diperbarui" in page.text
    point = db.session.scalar(select(MarketPoint).where(MarketPoint.code == "JKT-701"))
    assert point.name == NAME
    data = {"file": (io.BytesIO(REFUSED["xlsx"]), "points.xlsx")}
    page = client.post("/admin/points/import", data=data, follow_redirects=True)
    assert page.status_code == 200
    assert "Berkas bukan teks UTF-8 atau Windows-1252" in page.text

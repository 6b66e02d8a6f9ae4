"""Market points: finding them, editing them, and the market CSV (import, export)."""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from datetime import time
from pathlib import Path

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    func,
    or_,
    select,
)

from common.audit import Actor, record
from extensions import db
from slots.errors import InvalidMarketPoint, MarketPointNotFound
from slots.models import MarketPoint


def search_market_points(query: str = "") -> list[MarketPoint]:
    """Return active market points whose name or kecamatan contains ``query``.

    Case-insensitive; an empty query returns all, ordered by city then name.
    """
    stmt = select(MarketPoint).where(MarketPoint.active.is_(True))
    words = query.strip()
    if words:
        like = f"%{words.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(MarketPoint.name).like(like),
                func.lower(MarketPoint.kecamatan).like(like),
                func.lower(MarketPoint.city).like(like),
            )
        )
    return list(db.session.scalars(stmt.order_by(MarketPoint.city, MarketPoint.name)))


def get_market_point(code: str) -> MarketPoint:
    """Return the active market point with ``code``.

    Raises: MarketPointNotFound.
    """
    point = db.session.scalar(
        select(MarketPoint).where(
            MarketPoint.code == (code or "").strip().upper(),
            MarketPoint.active.is_(True),
        )
    )
    if point is None:
        raise MarketPointNotFound()
    return point


def import_market_points(path: Path, safe_limit: int, tz_name: str) -> tuple[int, int]:
    """Create or update market points from the shipped Jakarta market CSV (the demo
    seed, ``flask seed-demo``), read and checked by ``parse_points_csv``.

    Args: path to a CSV in the shipped data's columns (POINT_CSV_COLUMNS, ``note``
      optional and ignored here); safe_limit (people) and tz_name for new points.
    Returns: (created, updated) counts. Codes are ``JKT-<infopangan id, 3 digits>``
      so they stay stable across imports.
    Raises: InvalidMarketPoint (fault ``csv``) for a malformed file; nothing is kept.
    """
    rows = parse_points_csv(decode_csv_bytes(path.read_bytes()))
    created = updated = 0
    for row in rows:
        point = db.session.scalar(select(MarketPoint).where(MarketPoint.code == row.code))
        if point is None:
            point = MarketPoint(
                code=row.code,
                safe_limit=safe_limit,
                timezone=tz_name,
                opens_at=time(7, 0),
                closes_at=time(12, 0),
            )
            db.session.add(point)
            created += 1
        else:
            updated += 1
        point.name = row.name
        point.address = row.address
        point.kecamatan = row.kecamatan
        point.kecamatan_code = row.kecamatan_code
        point.city = row.city
        point.latitude, point.longitude = row.latitude, row.longitude
        point.source_id = row.market_id
    db.session.flush()
    return created, updated


# The columns of the shipped data/jakarta_markets.csv: export writes them, import reads them.
POINT_CSV_COLUMNS = (
    "name",
    "address",
    "kecamatan",
    "city",
    "latitude",
    "longitude",
    "kecamatan_code",
    "infopangan_market_id",
    "note",
)

_CODE = re.compile(r"JKT-(\d{1,6})")


def get_point(code: str) -> MarketPoint:
    """Return market point ``code``, active or not. Raises MarketPointNotFound."""
    point = db.session.scalar(select(MarketPoint).where(MarketPoint.code == code))
    if point is None:
        raise MarketPointNotFound()
    return point


@dataclass
class PointFields:
    """Editable fields of a market point, as validated by ``validate_point``."""

    name: str
    address: str
    kecamatan: str
    kecamatan_code: str
    city: str
    safe_limit: int
    timezone: str
    opens_at: time | None
    closes_at: time | None
    household_limit: bool


# A market point's zone is a place's zone ("Asia/Jakarta"), never one that depends on
# how the server is set up ("localtime") or an alias outside the IANA areas.
_ZONE_AREAS = ("Africa/", "America/", "Antarctica/", "Asia/", "Atlantic/", "Australia/")

_ZONE_AREAS += ("Europe/", "Indian/", "Pacific/")


def valid_timezone(name: str) -> bool:
    """True for an IANA zone of a place, such as Asia/Jakarta, Asia/Makassar."""
    import zoneinfo

    return name.startswith(_ZONE_AREAS) and name in zoneinfo.available_timezones()


def validate_point(fields: PointFields) -> PointFields:
    """Check a market point's fields. Raises InvalidMarketPoint with ``fault`` one of
    name, safe_limit, timezone, hours, kecamatan_code."""
    from slots.identity import kecamatan_codes

    if not 2 <= len(fields.name.strip()) <= 200:
        raise InvalidMarketPoint(fault="name")
    if not 1 <= fields.safe_limit <= 100_000:
        raise InvalidMarketPoint(fault="safe_limit")
    if not valid_timezone(fields.timezone):
        raise InvalidMarketPoint(fault="timezone")
    if fields.opens_at and fields.closes_at and fields.closes_at <= fields.opens_at:
        raise InvalidMarketPoint(fault="hours")
    if fields.kecamatan_code and fields.kecamatan_code not in kecamatan_codes():
        raise InvalidMarketPoint(fault="kecamatan_code")
    fields.name = fields.name.strip()
    return fields


def _point_values(point: MarketPoint) -> dict:
    return {
        "name": point.name,
        "address": point.address,
        "kecamatan": point.kecamatan,
        "kecamatan_code": point.kecamatan_code,
        "city": point.city,
        "safe_limit": point.safe_limit,
        "timezone": point.timezone,
        "opens_at": point.opens_at,
        "closes_at": point.closes_at,
        "household_limit": point.household_limit,
        "active": point.active,
    }


def create_point(market_id: int, fields: PointFields, actor: Actor) -> MarketPoint:
    """Create market point ``JKT-<market_id>`` (the InfoPangan numbering of the shipped
    data, so imports and exports keep one code per market).
    Raises: InvalidMarketPoint (422; fault ``code`` when the number is taken or not
    1..999999)."""
    if not isinstance(market_id, int) or not 1 <= market_id <= 999_999:
        raise InvalidMarketPoint(fault="code")
    code = f"JKT-{market_id:03d}"
    if db.session.scalar(select(MarketPoint.id).where(MarketPoint.code == code)) is not None:
        raise InvalidMarketPoint(fault="code")
    validate_point(fields)
    point = MarketPoint(code=code, source_id=market_id, active=True, **vars(fields))
    db.session.add(point)
    db.session.flush()
    record(actor, "point.create", "market_point", code, {}, _point_values(point), point.id)
    return point


def update_point(code: str, fields: PointFields, actor: Actor) -> MarketPoint:
    """Change a market point's fields. Raises MarketPointNotFound, InvalidMarketPoint."""
    point = get_point(code)
    validate_point(fields)
    before = _point_values(point)
    for name, value in vars(fields).items():
        setattr(point, name, value)
    after = _point_values(point)
    changed = {k for k in after if after[k] != before[k]}
    if not changed:
        return point
    record(
        actor,
        "point.update",
        "market_point",
        code,
        {k: before[k] for k in changed},
        {k: after[k] for k in changed},
        point.id,
    )
    return point


def set_point_active(code: str, active: bool, actor: Actor) -> MarketPoint:
    """Deactivate (hidden from residents, no booking) or reactivate a market point.
    Existing bookings stay valid at the gate."""
    point = get_point(code)
    if point.active != active:
        record(
            actor,
            "point.activate" if active else "point.deactivate",
            "market_point",
            code,
            {"active": point.active},
            {"active": active},
            point.id,
        )
        point.active = active
    return point


def set_safe_limit(code: str, safe_limit: int, actor: Actor) -> MarketPoint:
    """Set a point's safe limit (people inside at once). Raises InvalidMarketPoint."""
    point = get_point(code)
    if not isinstance(safe_limit, int) or not 1 <= safe_limit <= 100_000:
        raise InvalidMarketPoint(fault="safe_limit")
    if point.safe_limit != safe_limit:
        record(
            actor,
            "point.safe_limit",
            "market_point",
            code,
            {"safe_limit": point.safe_limit},
            {"safe_limit": safe_limit},
            point.id,
        )
        point.safe_limit = safe_limit
    return point


def export_points_csv() -> str:
    """Every market point as CSV in the shipped data's columns (POINT_CSV_COLUMNS)."""
    from common.text import safe_cell

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(POINT_CSV_COLUMNS)
    for point in db.session.scalars(select(MarketPoint).order_by(MarketPoint.code)):
        match = _CODE.fullmatch(point.code)
        market_id = point.source_id or (int(match.group(1)) if match else "")
        text = [safe_cell(value) for value in (point.name, point.address, point.kecamatan)]
        text.append(safe_cell(point.city))
        # Coordinates are numbers (a minus sign is not a formula here).
        numbers = ["" if v is None else repr(v) for v in (point.latitude, point.longitude)]
        rest = [safe_cell(point.kecamatan_code), market_id, "" if point.active else "inactive"]
        writer.writerow(text + numbers + rest)
    return out.getvalue()


@dataclass(frozen=True)
class PointRow:
    """One checked row of a market CSV: its ``line`` (2 = the first after the header),
    InfoPangan ``market_id`` (1..999999) and ``code`` (``JKT-<id, 3 digits>``), the
    text fields stripped, coordinates in degrees or None, and ``inactive`` when its
    note says so (what ``export_points_csv`` writes)."""

    line: int
    market_id: int
    name: str
    address: str
    kecamatan: str
    kecamatan_code: str
    city: str
    latitude: float | None
    longitude: float | None
    inactive: bool

    @property
    def code(self) -> str:
        """The market point's code, ``JKT-<market_id, at least 3 digits>``."""
        return f"JKT-{self.market_id:03d}"


NOT_TEXT = _l(
    "The file is not text in UTF-8 or Windows-1252: save it from the spreadsheet as CSV (UTF-8)."
)


def decode_csv_bytes(raw: bytes) -> str:
    """Decode an uploaded or command-line CSV file: the ONE decoding of every CSV
    the app reads (the admin upload, ``flask points import``, ``flask seed-demo``;
    issue 14 item 5).

    Accepts what spreadsheet programs write: UTF-8 with or without a BOM (Excel's
    "CSV UTF-8", LibreOffice, Google Sheets), UTF-16 with a BOM (the "Unicode" text
    some save as), and Windows-1252 (Excel's "CSV (Comma delimited)" on Windows,
    which also reads every Latin-1 text). UTF-8 is tried before Windows-1252: a
    Windows-1252 file of accented names is almost never valid UTF-8, while the
    reverse always "succeeds" with the wrong letters.

    Args: raw, the file's bytes. Returns: the text, BOM removed.
    Raises: InvalidMarketPoint (fault ``csv``, ``reason`` ``encoding``, message
      NOT_TEXT) for bytes that are none of these: NUL bytes outside UTF-16 (a
      workbook or another binary file) or bytes Windows-1252 leaves undefined.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise InvalidMarketPoint(NOT_TEXT, fault="csv", reason="encoding") from None
    if b"\x00" in raw:
        raise InvalidMarketPoint(NOT_TEXT, fault="csv", reason="encoding")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidMarketPoint(NOT_TEXT, fault="csv", reason="encoding")


def parse_points_csv(text: str) -> list[PointRow]:
    """Read and check a market CSV in the shipped data's columns (POINT_CSV_COLUMNS,
    ``note`` optional): the one reader of both the demo seed and the admin import.

    Returns: the rows, in file order. Raises: InvalidMarketPoint with fault ``csv``:
      ``reason`` nul for a NUL byte, ``missing`` columns, or the ``line`` of a row with
      too few or too many cells (``reason`` columns), a bad number, an id out of range
      or repeated, an empty name, an unknown kecamatan code or coordinates out of range.
    """
    from slots.identity import kecamatan_codes

    if "\x00" in text:
        raise InvalidMarketPoint(fault="csv", reason="nul")
    reader = csv.DictReader(io.StringIO(text))
    missing = set(POINT_CSV_COLUMNS) - {"note"} - set(reader.fieldnames or ())
    if missing:
        raise InvalidMarketPoint(fault="csv", missing=sorted(missing))
    rows: list[PointRow] = []
    seen: set[int] = set()
    for line, row in enumerate(reader, start=2):
        if None in row or any(value is None for value in row.values()):
            raise InvalidMarketPoint(fault="csv", line=line, reason="columns")
        try:
            market_id = int(row["infopangan_market_id"])
            latitude = float(row["latitude"]) if row["latitude"] else None
            longitude = float(row["longitude"]) if row["longitude"] else None
        except (TypeError, ValueError) as exc:
            raise InvalidMarketPoint(fault="csv", line=line) from exc
        code_ok = not row["kecamatan_code"] or row["kecamatan_code"].strip() in kecamatan_codes()
        in_range = (latitude is None or -90 <= latitude <= 90) and (
            longitude is None or -180 <= longitude <= 180
        )  # NaN fails every comparison, so it is out of range too
        if (
            not 1 <= market_id <= 999_999
            or market_id in seen
            or not (row["name"] or "").strip()
            or not code_ok
            or not in_range
        ):
            raise InvalidMarketPoint(fault="csv", line=line)
        seen.add(market_id)
        rows.append(
            PointRow(
                line=line,
                market_id=market_id,
                name=row["name"].strip(),
                address=(row["address"] or "").strip(),
                kecamatan=(row["kecamatan"] or "").strip(),
                kecamatan_code=(row["kecamatan_code"] or "").strip(),
                city=(row["city"] or "").strip(),
                latitude=latitude,
                longitude=longitude,
                inactive=(row.get("note") or "").strip() == "inactive",
            )
        )
    return rows


def import_points_csv(text: str, actor: Actor) -> tuple[int, int]:
    """Create or update market points from CSV text in the shipped data's columns
    (the admin upload and ``flask points import``), read and checked by
    ``parse_points_csv``; each change is recorded in the audit log as ``actor``'s.

    Returns (created, updated). Raises InvalidMarketPoint (fault ``csv``, with the
    ``line``) for a missing column or a bad number; nothing is written then.
    """
    config = current_app.config
    created = updated = 0
    for row in parse_points_csv(text):
        code = row.code
        point = db.session.scalar(select(MarketPoint).where(MarketPoint.code == code))
        before = _point_values(point) if point else {}
        if point is None:
            point = MarketPoint(
                code=code,
                safe_limit=config["DEFAULT_SAFE_LIMIT"],
                timezone=config["DEFAULT_TIMEZONE"],
                opens_at=time(7, 0),
                closes_at=time(12, 0),
                source_id=row.market_id,
            )
            db.session.add(point)
            created += 1
        else:
            updated += 1
        point.name = row.name[:200]
        point.address = row.address[:300]
        point.kecamatan = row.kecamatan[:100]
        point.kecamatan_code = row.kecamatan_code[:6]
        point.city = row.city[:100]
        point.latitude, point.longitude = row.latitude, row.longitude
        if row.inactive:
            point.active = False
        db.session.flush()
        record(actor, "point.import", "market_point", code, before, _point_values(point), point.id)
    return created, updated

"""A day's bookings and check-ins as a CSV file for spreadsheets.

What goes in, and why no more (DESIGN.md, "Privacy"): the booking code (to find a
booking again), the point and slot, the status and the check-in and check-out times
(for counting hand-outs and no-shows), and the NIK masked to its last four digits
(``****1234``, enough to match a KTP at a complaint, never the NIK). No name and no
phone: reconciling a day does not need them, and the gate screen shows the name when
staff check a person against their KTP. Files leave the system and get mailed around,
so they carry the least personal data that does the job.

Stock (issue 15), after the older columns so existing sheets keep working: the
packages each booking reserved (``packages``, 0 where the day has no stock) and when
the gate handed them over (``handed_out_at``, empty when not), then the point-day's
totals repeated on each of its rows (``stock_packages``, ``stock_reserved``,
``stock_handed_out``; empty where the day has no stock setting), since a CSV of
bookings has no row of its own to hold them.

Spreadsheet safety: a cell starting with ``= + - @``, a tab or a carriage return gets a
leading apostrophe so Excel, LibreOffice and Sheets show it as text instead of running
it as a formula (CSV injection); the file is UTF-8 with a byte-order mark so Excel
reads Indonesian text right; lines end in CRLF (RFC 4180).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import contains_eager

from common.text import safe_cell
from common.timeutil import local_day_bounds, local_text
from extensions import db
from slots.models import Booking, MarketPoint, Slot
from slots.stock import stock_levels

COLUMNS = (
    "booking_code",
    "market_point",
    "date",
    "slot_start",
    "slot_end",
    "status",
    "nik",
    "booked_at",
    "checked_in_at",
    "checked_out_at",
    "packages",
    "handed_out_at",
    "stock_packages",
    "stock_reserved",
    "stock_handed_out",
    "channel",  # issue 17: web, assisted, sms, ussd, whatsapp (last: columns only grow)
)


@dataclass(frozen=True)
class ExportRow:
    """One booking as exported: local wall-clock times (text), the masked NIK."""

    values: tuple[str, ...]


def mask_nik(last4: str) -> str:
    """Return the display form of a NIK known by its last four digits: ``****1234``."""
    return f"****{last4}"


def booking_rows(points: list[MarketPoint], day: date) -> list[ExportRow]:
    """Return the export rows of every booking in ``points``' slots on local ``day``,
    by point code, slot start and booking code. Times are local to each point
    (``YYYY-MM-DD HH:MM``, slot times ``HH:MM``); empty when not happened. The
    stock columns: counts of packages (issue 15), see the module's docstring."""
    levels = stock_levels([p.id for p in points], day)
    rows: list[ExportRow] = []
    for point in sorted(points, key=lambda p: p.code):
        start, end = local_day_bounds(day, point.timezone)

        def clock(
            instant: datetime | None, fmt: str = "%Y-%m-%d %H:%M", tz_name: str = point.timezone
        ) -> str:
            return local_text(instant, tz_name, fmt) if instant else ""

        bookings = db.session.scalars(
            select(Booking)
            .join(Slot, Booking.slot_id == Slot.id)
            .options(contains_eager(Booking.slot))
            .where(Slot.market_point_id == point.id, Slot.starts_at >= start, Slot.starts_at < end)
            .order_by(Slot.starts_at, Booking.code)
        )
        level = levels.get(point.id)
        totals = (
            (str(level.packages), str(level.reserved), str(level.handed_out))
            if level is not None
            else ("", "", "")
        )
        for booking in bookings:
            slot = booking.slot
            rows.append(
                ExportRow(
                    (
                        booking.code,
                        point.code,
                        day.isoformat(),
                        clock(slot.starts_at, "%H:%M"),
                        clock(slot.ends_at, "%H:%M"),
                        booking.status,
                        mask_nik(booking.nik_last4),
                        clock(booking.created_at),
                        clock(booking.checked_in_at),
                        clock(booking.checked_out_at),
                        str(booking.packages),
                        clock(booking.handed_out_at),
                        *totals,
                        booking.channel,
                    )
                )
            )
    return rows


def to_csv(rows: list[ExportRow]) -> bytes:
    """Return the CSV file (UTF-8 with BOM, CRLF lines, header row) of ``rows``,
    every cell passed through ``safe_cell``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row.values])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")

"""The printable ticket (PDF, fpdf2) and the calendar file (.ics, icalendar).

Names print in Latin (with diacritics), Greek, Cyrillic and Arabic (DejaVu Sans) and
in Chinese and Japanese (Droid Sans Fallback), shaped by HarfBuzz; characters no
installed font has (Korean, most Indic scripts, many emoji) print as '?'. Without
those fonts (Debian packages fonts-dejavu-core and fonts-droid-fallback) it falls
back to Helvetica and Latin-1, still a valid ticket with a scannable QR code.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path

from fontTools.ttLib import TTFont
from fpdf import FPDF
from icalendar import Calendar, Event

from common.timeutil import UTC, utcnow
from qr.render import qr_png

FONT_REGULAR = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FONT_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
FONT_FALLBACK = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")


@dataclass(frozen=True)
class TicketFacts:
    """What a printed ticket and a calendar entry show (all display-ready text;
    ``starts_at``/``ends_at`` aware, in the market point's zone)."""

    code: str
    token: str
    name: str
    nik_last4: str
    point_name: str
    point_address: str
    starts_at: datetime
    ends_at: datetime
    ticket_url: str
    # When the resident is told to come: the start of the booking's arrival wave
    # (issue 15), aware, in the point's zone; None for the slot's start.
    arrive_at: datetime | None = None

    @property
    def arrival(self) -> datetime:
        """The arrival time: ``arrive_at``, else the slot's start."""
        return self.arrive_at or self.starts_at


@cache
def _covered() -> frozenset[int] | None:
    """Code points the installed ticket fonts can draw, or None without the fonts."""
    if not (FONT_REGULAR.exists() and FONT_BOLD.exists()):
        return None
    points: set[int] = set()
    for path in (FONT_REGULAR, FONT_FALLBACK):
        if path.exists():
            with TTFont(path, lazy=True) as font:
                points.update(font.getBestCmap())
    return frozenset(points)


def _printable(text: str) -> str:
    """Replace characters no font can draw (emoji, without fonts: non-Latin-1) by '?'."""
    covered = _covered()
    if covered is None:
        return text.encode("latin-1", "replace").decode("latin-1")
    return "".join(ch if ord(ch) in covered or ch in "\n" else "?" for ch in text)


def ticket_pdf(facts: TicketFacts, labels: dict[str, str]) -> bytes:
    """Return an A5 PDF with the QR code, the booking code, place, time and holder.

    Args: facts; labels, the translated captions (keys: title, code, when, name,
      show, keep; arrive, with ``%(time)s`` for the arrival time, HH:MM). Rendering
      parses three fonts (about a second of CPU here), so the result is kept per
      process for the same facts and labels.
    """
    return _ticket_pdf(facts, tuple(sorted(labels.items())))


@lru_cache(maxsize=256)
def _ticket_pdf(facts: TicketFacts, label_items: tuple) -> bytes:
    labels = dict(label_items)
    pdf = FPDF(format=(148, 210))  # A5 in mm
    pdf.set_auto_page_break(False)
    pdf.set_margins(12, 12, 12)
    pdf.add_page()
    if _covered() is not None:
        pdf.add_font("Ticket", "", str(FONT_REGULAR))
        pdf.add_font("Ticket", "B", str(FONT_BOLD))
        if FONT_FALLBACK.exists():
            pdf.add_font("Fallback", "", str(FONT_FALLBACK))
            pdf.set_fallback_fonts(["Fallback"], exact_match=False)
        pdf.set_text_shaping(True)
        family = "Ticket"
    else:
        family = "Helvetica"
    width = pdf.epw

    def line(text: str, size: float, style: str = "", height: float = 7) -> None:
        pdf.set_font(family, style, size)
        pdf.multi_cell(width, height, _printable(text), align="C", new_x="LMARGIN", new_y="NEXT")

    line(labels["title"], 16, "B", 9)
    side = 80  # mm: large enough for a cheap scanner at arm's length
    pdf.image(
        io.BytesIO(qr_png(facts.token, box_size=10)),
        x=(pdf.w - side) / 2,
        y=pdf.get_y() + 2,
        w=side,
    )
    pdf.set_y(pdf.get_y() + side + 4)
    line(labels["code"], 10)
    line(f"{facts.code[:4]}-{facts.code[4:]}", 22, "B", 11)
    pdf.ln(2)
    line(facts.point_name, 13, "B")
    if facts.point_address:
        line(facts.point_address, 10, "", 5)
    when = f"{facts.starts_at:%d-%m-%Y  %H:%M}-{facts.ends_at:%H:%M} {facts.starts_at:%Z}"
    line(f"{labels['when']}: {when}", 12, "B")
    if "arrive" in labels:
        line(labels["arrive"] % {"time": f"{facts.arrival:%H:%M}"}, 14, "B", 8)
    line(f"{labels['name']}: {facts.name}  ·  NIK ****{facts.nik_last4}", 11)
    pdf.ln(2)
    line(labels["show"], 9, "", 5)
    line(labels["keep"], 9, "", 5)
    return bytes(pdf.output())


def ticket_ics(facts: TicketFacts, summary: str, description: str) -> bytes:
    """Return an iCalendar file with one event, its times in UTC: from the arrival
    time (the booking's arrival wave, issue 15) to the slot's end."""
    calendar = Calendar()
    calendar.add("prodid", "-//Antri//Ticket//ID")
    calendar.add("version", "2.0")
    event = Event()
    event.add("uid", f"{facts.code}@antri")
    event.add("summary", summary)
    event.add("dtstart", facts.arrival.astimezone(UTC))
    event.add("dtend", facts.ends_at.astimezone(UTC))
    event.add("dtstamp", utcnow())  # when this file was made
    event.add("location", ", ".join(filter(None, (facts.point_name, facts.point_address))))
    event.add("description", description)
    event.add("url", facts.ticket_url)
    calendar.add_component(event)
    return calendar.to_ical()

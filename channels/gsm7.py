"""The GSM 7-bit default alphabet (3GPP TS 23.038, formerly GSM 03.38), for USSD
screens: a screen is at most 182 characters of it (issue 17 §3).

Only the basic table counts here: the extension table's characters (``^{}[]~|€\\``)
take two septets each behind an escape, and some handsets show them wrongly, so a
screen never uses them. Written from the standard's table (no library: the one check
is a set lookup).
"""

from __future__ import annotations

import unicodedata

# The 128 characters of the basic table, in code point order 0x00..0x7F, with the
# escape (0x1B) left out (it opens the extension table).
BASIC_TABLE = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
USSD_SCREEN_MAX = 182  # characters of one USSD screen (issue 17 §3)


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM 7-bit basic table."""
    return all(ch in BASIC_TABLE for ch in text)


def to_gsm7(text: str) -> str:
    """Return ``text`` in the GSM 7-bit basic table: accents stripped (``é`` -> ``e``:
    issue 17 asks for plain letters, which every handset shows), typographic quotes
    and dashes made plain, anything else left without a match becomes ``?``."""
    plain = (
        text.replace("\u2019", "'")
        .replace("\u2018", "'")
        .replace("\u201c", '"')
        .replace("\u201d", '"')
        .replace("\u2013", "-")
        .replace("\u2014", "-")
        .replace("\u2026", "...")
    )
    decomposed = unicodedata.normalize("NFKD", plain)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "".join(ch if ch in BASIC_TABLE else "?" for ch in stripped)

"""Resident identity: NIK validation and hashing, phone normalisation, names.

NIK rules (Dukcapil's 16-digit Nomor Induk Kependudukan): digits 1-6 are the
kecamatan code of registration (Kepmendagri wilayah codes; older NIKs still carry
codes retired since 2015, kept in ``data/wilayah_kecamatan_historical.csv``), digits
7-12 the birth date DDMMYY with 40 added to DD for women, digits 13-16 a serial that
starts at 0001.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import phonenumbers
from flask import current_app
from flask_babel import lazy_gettext as _l

from common.errors import ValidationError
from slots.errors import InvalidKK, InvalidLanguage, InvalidName, InvalidNIK, InvalidPhone

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
_SEPARATORS = re.compile(r"[\s.\-]")


@cache
def kecamatan_codes() -> frozenset[str]:
    """Return every 6-digit kecamatan code a NIK may start with (current and historical)."""
    codes: set[str] = set()
    for name in ("wilayah_kecamatan.csv", "wilayah_kecamatan_historical.csv"):
        with open(DATA_DIR / name, newline="", encoding="utf-8") as handle:
            codes.update(row["code"] for row in csv.DictReader(handle))
    return frozenset(codes)


def _birth_date_exists(dd: int, mm: int, yy: int) -> bool:
    """True when DD/MM/YY is a real date in 19YY or 20YY (the century is not encoded)."""
    for century in (1900, 2000):
        try:
            date(century + yy, mm, dd)
            return True
        except ValueError:
            continue
    return False


def validate_nik(raw: str) -> str:
    """Check a NIK and return its 16 digits.

    Args: raw, as typed (spaces, dots and dashes between digits are allowed).
    Returns: the 16-digit string.
    Raises: InvalidNIK with ``fault`` one of ``length`` (not 16 digits), ``region``
      (unknown kecamatan code), ``birth_date`` (digits 7-12 not a date, women's day
      +40), ``serial`` (digits 13-16 are 0000).
    """
    nik = _SEPARATORS.sub("", raw or "")
    # ASCII only: Python's \d also matches full-width and other scripts' digits,
    # which would give one person several different hashes.
    if not re.fullmatch(r"[0-9]{16}", nik):
        raise InvalidNIK(_l("A NIK has exactly 16 digits."), fault="length")
    if nik[:6] not in kecamatan_codes():
        raise InvalidNIK(
            _l("The first six digits of this NIK are not a known region code."),
            fault="region",
        )
    dd, mm, yy = int(nik[6:8]), int(nik[8:10]), int(nik[10:12])
    if dd > 40:  # women's day of birth has 40 added
        dd -= 40
    if not _birth_date_exists(dd, mm, yy):
        raise InvalidNIK(
            _l("Digits 7 to 12 of this NIK are not a valid date of birth."),
            fault="birth_date",
        )
    if nik[12:] == "0000":
        raise InvalidNIK(_l("The last four digits of a NIK cannot be 0000."), fault="serial")
    return nik


def validate_kk(raw: str) -> str:
    """Check a family card (Kartu Keluarga) number and return its 16 digits.

    Args: raw, as typed (spaces, dots and dashes allowed).
    Raises: InvalidKK with ``fault`` one of ``length`` (not 16 ASCII digits), ``region``
      (the first six digits are not a known kecamatan code, as on a NIK), ``serial``
      (the last four are 0000).
    """
    kk = _SEPARATORS.sub("", raw or "")
    if not re.fullmatch(r"[0-9]{16}", kk):
        raise InvalidKK(_l("A family card (KK) number has exactly 16 digits."), fault="length")
    if kk[:6] not in kecamatan_codes():
        raise InvalidKK(
            _l("The first six digits of this KK number are not a known region code."),
            fault="region",
        )
    if kk[12:] == "0000":
        raise InvalidKK(_l("The last four digits of a KK number cannot be 0000."), fault="serial")
    return kk


def hash_kk(kk: str, key: str) -> str:
    """Return the keyed hash (HMAC-SHA256, hex) of a validated KK number, in a domain
    apart from NIK hashes (a KK and a NIK with the same digits hash differently)."""
    return hmac.new(key.encode(), f"KK:{kk}".encode(), hashlib.sha256).hexdigest()


def hash_nik(nik: str, key: str) -> str:
    """Return the keyed hash (HMAC-SHA256, hex, 64 chars) of a validated NIK.

    The key is the server secret ``NIK_HASH_KEY``, so a leaked database cannot be
    reversed by hashing every possible NIK.
    """
    return hmac.new(key.encode(), nik.encode(), hashlib.sha256).hexdigest()


def normalise_phone(raw: str) -> str:
    """Parse an Indonesian mobile number and return it in E.164 (``+62812...``).

    ``0812...``, ``62812...`` and ``+62 812-...`` are one number.
    Raises: InvalidPhone when it is not a valid number that can receive messages.
    """
    text = (raw or "").strip()
    if not text or len(text) > 32:
        raise InvalidPhone()
    if text.startswith("62"):
        text = "+" + text
    try:
        number = phonenumbers.parse(text, "ID")
    except phonenumbers.NumberParseException:
        raise InvalidPhone() from None
    # Notices go through Indonesian SMS/WhatsApp gateways: Indonesian numbers only.
    if not phonenumbers.is_valid_number_for_region(number, "ID"):
        raise InvalidPhone()
    kind = phonenumbers.number_type(number)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        raise InvalidPhone()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def clean_name(raw: str) -> str:
    """Collapse whitespace in a resident's name; 2 to 120 characters, no control chars.

    Raises: InvalidName otherwise.
    """
    name = " ".join((raw or "").split())
    if not 2 <= len(name) <= 120 or any(ord(ch) < 32 for ch in name):
        raise InvalidName()
    return name


@dataclass(frozen=True)
class ResidentInput:
    """A resident's validated details: clean name, NIK hash, last four, E.164 phone."""

    name: str
    nik_hash: str
    nik_last4: str
    phone: str
    language: str = "id"
    kk_hash: str | None = None  # only at points with household_limit


def resident_input(
    name: str, nik: str, phone: str, language: str = "id", phone_optional: bool = False
) -> ResidentInput:
    """Validate a resident's name, NIK, phone and message language.

    Args: language, a code of LANGUAGES ("id" or "en"): their messages use it;
      phone_optional, True for a booking staff make for a resident without a phone
      (an empty phone is then kept as "", and no message is sent).
    Raises: InvalidName, InvalidNIK, InvalidPhone, InvalidLanguage (422).
    """
    clean = clean_name(name)
    digits = validate_nik(nik)
    e164 = "" if phone_optional and not (phone or "").strip() else normalise_phone(phone)
    if language not in current_app.config["LANGUAGES"]:
        raise InvalidLanguage()
    return ResidentInput(
        clean, hash_nik(digits, current_app.config["NIK_HASH_KEY"]), digits[-4:], e164, language
    )


def field_faults(
    name: str, nik: str, phone: str, kk: str | None = None
) -> dict[str, ValidationError]:
    """Check every field of a resident's form at once, by the rules above.

    Args: the fields as typed; kk None where the market point does not ask for it.
    Returns: ``{field name: the error its rule raised}`` in form order (name, nik,
      phone, kk), empty when every field passes. The messages name the fault, never
      the value typed (a NIK stays out of them).
    Rule: issue 14 item 8: a form reports every faulty field together, before the
      booking service runs (which checks them again: it is the one rule set).
    """
    checks = [
        ("name", clean_name, name),
        ("nik", validate_nik, nik),
        ("phone", normalise_phone, phone),
    ]
    if kk is not None:
        checks.append(("kk", validate_kk, kk))
    faults: dict[str, ValidationError] = {}
    for field, check, value in checks:
        try:
            check(value)
        except ValidationError as exc:
            faults[field] = exc
    return faults

"""NIK validation and phone normalisation (no database needed)."""

from __future__ import annotations

import pytest

from slots.errors import InvalidNIK, InvalidPhone
from slots.identity import clean_name, hash_nik, normalise_phone, validate_nik


@pytest.mark.parametrize(
    "raw",
    [
        "3171041205900001",  # Senen, man born 12-05-1990
        "3171045205900001",  # same date, a woman: day + 40
        "3171 0412 0590 0001",  # spaces as printed on a KTP
        "9101012902000001",  # a retired Papua code (Merauke, Permendagri 58/2021), 29-02-2000
        "3171040101010001",
    ],
)
def test_valid_niks(raw):
    assert validate_nik(raw) == raw.replace(" ", "")


@pytest.mark.parametrize(
    ("raw", "fault"),
    [
        ("317104120590001", "length"),
        ("31710412059000012", "length"),
        ("3171O41205900001", "length"),
        ("", "length"),
        ("9999991205900001", "region"),
        ("3171043205900001", "birth_date"),  # day 32
        ("3171047205900001", "birth_date"),  # woman's day 32 (72 - 40)
        ("3171041213900001", "birth_date"),  # month 13
        ("3171042902010001", "birth_date"),  # 29-02 in neither 1901 nor 2001
        ("3171041205900000", "serial"),
    ],
)
def test_invalid_niks_name_their_fault(raw, fault):
    with pytest.raises(InvalidNIK) as caught:
        validate_nik(raw)
    assert caught.value.code == "invalid_nik"
    assert caught.value.details == {"fault": fault}


def test_nik_hash_is_keyed_and_stable():
    nik = "3171041205900001"
    assert hash_nik(nik, "a") == hash_nik(nik, "a")
    assert hash_nik(nik, "a") != hash_nik(nik, "b")
    assert len(hash_nik(nik, "a")) == 64 and nik not in hash_nik(nik, "a")


@pytest.mark.parametrize("raw", ["081234567890", "6281234567890", "+62 812-3456-7890"])
def test_phone_forms_are_one_number(raw):
    assert normalise_phone(raw) == "+6281234567890"


@pytest.mark.parametrize("raw", ["", "12345", "0215551234", "+1 202 555 0101x", "not a phone"])
def test_invalid_phones(raw):
    with pytest.raises(InvalidPhone):
        normalise_phone(raw)


def test_names_are_trimmed_and_bounded():
    assert clean_name("  Siti   Aminah ") == "Siti Aminah"
    assert clean_name("李小龍") == "李小龍"
    for bad in ("", "A", "x" * 121, "Budi\x00"):
        with pytest.raises(Exception) as caught:
            clean_name(bad)
        assert caught.value.code == "invalid_name"


@pytest.mark.parametrize(
    "raw",
    [
        "３１７１０４１２０５９０００００１",
        "317104١٢٠٥٩٠٠٠٠١",
        "317104१२०५९००००१",
        "3171041205900０01",
    ],
)
def test_only_ascii_digits_count(raw):
    """Other scripts' digits would give one person many different NIK hashes."""
    with pytest.raises(InvalidNIK) as caught:
        validate_nik(raw)
    assert caught.value.details == {"fault": "length"}


def test_malformed_redis_url_stops_startup(tmp_path):
    from config import ConfigError, load_config

    with pytest.raises(ConfigError):
        load_config(tmp_path, {"REDIS_URL": "notaurl"})
    assert (
        load_config(tmp_path, {"REDIS_URL": "redis://h:6379/0"})["REDIS_URL"] == "redis://h:6379/0"
    )
    with pytest.raises(ConfigError):
        load_config(tmp_path, {"ANTRI_ENV": "production"})
    with pytest.raises(ConfigError):
        load_config(tmp_path, {"WTF_CSRF_ENABLED": "maybe"})

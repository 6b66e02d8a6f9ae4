"""The Indonesian catalog covers every UI string and keeps its placeholders intact.

Standalone: uses no conftest fixtures and no network. Messages are extracted afresh
from the source tree with the project's babel.cfg, so a string added to the code
without a translation fails here rather than showing up in English on a resident's
phone.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
BABEL_CFG = ROOT / "babel.cfg"
ID_PO = ROOT / "translations" / "id" / "LC_MESSAGES" / "messages.po"
KEYWORDS = ("_l", "lazy_gettext")

# A Python %-placeholder: %(name)s, %(num)d, %(x)05.2f ...; group 1 is the name.
PLACEHOLDER = re.compile(r"%\((\w+)\)[#0\- +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")


def _ids(message: Message) -> tuple[str, ...]:
    """Return the msgid (and msgid_plural) of ``message`` as a tuple of strings."""
    return message.id if isinstance(message.id, tuple) else (message.id,)


def _strings(message: Message) -> tuple[str, ...]:
    """Return every msgstr form of ``message`` (one for singular entries)."""
    if isinstance(message.string, tuple | list):
        return tuple(message.string)
    return (message.string or "",)


def _label(message: Message) -> str:
    return " | ".join(_ids(message))


def _load(path: Path, **kwargs) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, **kwargs)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    assert ID_PO.is_file(), f"missing {ID_PO}; run pybabel init/update"
    return _load(ID_PO)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """Extract the messages from the current source tree into a temporary .pot."""
    pot = tmp_path_factory.mktemp("i18n") / "messages.pot"
    command = [sys.executable, "-m", "babel.messages.frontend", "-q", "extract"]
    command += ["-F", str(BABEL_CFG)]
    for keyword in KEYWORDS:
        command += ["-k", keyword]
    command += ["-o", str(pot), "."]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"pybabel extract failed:\n{done.stdout}\n{done.stderr}"
    extracted = _load(pot)
    assert len(extracted) > 0, "extraction found no messages; is babel.cfg right?"
    return extracted


def test_extraction_reads_python_and_templates(fresh: Catalog) -> None:
    sources = {path.split("/")[0] for message in fresh for path, _line in message.locations}
    assert {"templates", "app.py", "slots", "checkin", "qr", "accounts"} <= sources
    assert not sources & {".venv", "tests", "bench", "migrations"}, sources


def test_every_extracted_message_is_translated(fresh: Catalog, catalog: Catalog) -> None:
    assert not catalog.fuzzy, "the catalog header is marked fuzzy; pybabel compile skips it"
    problems = []
    for message in fresh:
        if not message.id:
            continue
        entry = catalog.get(message.id, message.context)
        if entry is None:
            problems.append(f"missing: {_label(message)!r}")
        elif entry.fuzzy:
            problems.append(f"fuzzy: {_label(message)!r}")
        elif not all(text.strip() for text in _strings(entry)):
            problems.append(f"empty: {_label(message)!r}")
        elif isinstance(message.id, tuple) != isinstance(entry.id, tuple):
            problems.append(f"plural mismatch: {_label(message)!r}")
    assert not problems, (
        f"{len(problems)} message(s) lack an Indonesian translation in {ID_PO.name} "
        "(run pybabel update, then translate):\n" + "\n".join(problems)
    )


def test_plural_entries_fill_every_form(catalog: Catalog) -> None:
    assert catalog.num_plurals == 1, catalog.plural_forms
    short = [
        _label(message)
        for message in catalog
        if message.id and message.pluralizable and len(_strings(message)) < catalog.num_plurals
    ]
    assert not short, f"plural entries without all forms: {short}"


def test_placeholders_match(catalog: Catalog) -> None:
    problems = []
    for message in catalog:
        if not message.id:
            continue
        for msgid in _ids(message):
            wanted = set(PLACEHOLDER.findall(msgid))
            for text in _strings(message):
                got = set(PLACEHOLDER.findall(text))
                if got != wanted:
                    problems.append(f"{msgid!r}: expected {sorted(wanted)}, got {sorted(got)}")
    assert not problems, "placeholder mismatch:\n" + "\n".join(problems)


def test_no_stray_percent_signs(catalog: Catalog) -> None:
    """Jinja's new-style gettext applies ``%`` to every string, so a bare % would crash."""
    bad = []
    for message in catalog:
        if not message.id:
            continue
        for text in _strings(message):
            rest = PLACEHOLDER.sub("", text).replace("%%", "")
            if "%" in rest:
                bad.append(f"{_label(message)!r} -> {text!r}")
    assert not bad, "unescaped % in translations:\n" + "\n".join(bad)


def test_babel_format_checks_pass(catalog: Catalog) -> None:
    errors = [f"{_label(message)!r}: {errs}" for message, errs in catalog.check()]
    assert not errors, "\n".join(errors)

"""``PUT|GET /api/v1/market-points/<code>/stock/<date>``, ``flask stock``, the admin
page's stock form, and the ``sold_out`` / ``packages`` fields of the JSON answers
(issue 15)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from common.audit import AuditEntry
from extensions import db
from slots.models import Stock
from slots.stock import slot_day


@pytest.fixture
def tokens(make_user, make_slot):
    slot = make_slot(capacity=2, starts_in=120)
    _, admin = make_user("root@antri.test", "admin")
    _, supervisor = make_user("super@antri.test", "supervisor")
    _, staff = make_user("staff@antri.test", "staff", slot.market_point)
    bearer = {name: {"Authorization": f"Bearer {t}"} for name, t in
              (("admin", admin), ("supervisor", supervisor), ("staff", staff))}  # fmt: skip
    return slot, bearer


def _url(slot, day=None):
    return f"/api/v1/market-points/{slot.market_point.code}/stock/{day or slot_day(slot)}"


def _book(client, slot, nik):
    body = {"slot_id": slot.id, "name": "Budi", "nik": nik(), "phone": "081234567890"}
    return client.post("/api/v1/bookings", json=body)


def test_set_read_book_until_sold_out(client, tokens, nik):
    slot, bearer = tokens
    url = _url(slot)
    missing = client.get(url, headers=bearer["supervisor"])
    assert (missing.status_code, missing.json["error"]) == (404, "stock_not_set")
    put = client.put(url, json={"packages": 3, "per_booking": 2}, headers=bearer["admin"])
    assert put.status_code == 200, put.json
    assert put.json == {
        "market_point": slot.market_point.code,
        "date": slot_day(slot).isoformat(),
        "packages": 3,
        "per_booking": 2,
        "reserved": 0,
        "handed_out": 0,
        "left": 3,
    }
    listed = client.get(f"/api/v1/market-points/{slot.market_point.code}/slots")
    assert [s["sold_out"] for s in listed.json] == [False]
    booked = _book(client, slot, nik)
    assert (booked.status_code, booked.json["packages"]) == (201, 2)
    looked_up = client.get(
        f"/api/v1/bookings/{booked.json['code']}", query_string={"phone": "081234567890"}
    )
    assert looked_up.json["packages"] == 2
    refused = _book(client, slot, nik)
    assert (refused.status_code, refused.json["error"]) == (409, "sold_out")
    assert refused.json["message"].startswith("Barang untuk hari ini sudah habis")
    listed = client.get(f"/api/v1/market-points/{slot.market_point.code}/slots")
    assert [(s["sold_out"], s["remaining"]) for s in listed.json] == [(True, 1)]
    read = client.get(url, headers=bearer["supervisor"]).json
    assert (read["reserved"], read["left"]) == (2, 1)
    lower = client.put(url, json={"packages": 1, "per_booking": 1}, headers=bearer["admin"])
    assert (lower.status_code, lower.json["error"], lower.json["reserved"]) == (
        409,
        "stock_below_reserved",
        2,
    )
    assert (
        db.session.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.action == "stock.set"))
        == 1
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"packages": -1}, "invalid_stock"),
        ({"packages": 5, "per_booking": 0}, "invalid_stock"),
        ({"packages": 10**9}, "invalid_stock"),
        ({"packages": "5"}, "invalid_stock"),
        ({"per_booking": 1}, "invalid_stock"),
        ({"packages": 5, "per_booking": 1000}, "invalid_stock"),
        # A misspelt per_booking was ignored: the day was set at 1 per booking.
        ({"packages": 5, "perBooking": 2}, "invalid_stock"),
        ({"packages": 5, "per-booking": 2}, "invalid_stock"),
    ],
)
def test_bad_input_is_422(client, tokens, body, error):
    slot, bearer = tokens
    answer = client.put(_url(slot), json=body, headers=bearer["admin"])
    assert (answer.status_code, answer.json["error"]) == (422, error), answer.json
    assert answer.json["fields"]
    assert db.session.scalar(select(func.count(Stock.id))) == 0


@pytest.mark.parametrize("day", ["2026-13-01", "tomorrow", "1999-12-31", "2026-1-1"])
def test_bad_date_is_422(client, tokens, day):
    slot, bearer = tokens
    answer = client.put(_url(slot, day), json={"packages": 5}, headers=bearer["admin"])
    assert (answer.status_code, answer.json["error"]) == (422, "invalid_date")
    answer = client.get(_url(slot, day), headers=bearer["admin"])
    assert (answer.status_code, answer.json["error"]) == (422, "invalid_date")


def test_who_may_set_and_read(client, tokens):
    slot, bearer = tokens
    body = {"packages": 5}
    assert client.put(_url(slot), json=body).status_code == 401
    for role in ("supervisor", "staff"):
        assert client.put(_url(slot), json=body, headers=bearer[role]).status_code == 403
    assert client.get(_url(slot), headers=bearer["staff"]).status_code == 403
    unknown = client.put(
        f"/api/v1/market-points/JKT-404/stock/{slot_day(slot)}", json=body, headers=bearer["admin"]
    )
    assert (unknown.status_code, unknown.json["error"]) == (404, "market_point_not_found")
    assert db.session.scalar(select(func.count(Stock.id))) == 0


def test_openapi_declares_the_stock_paths(client):
    document = client.get("/api/v1/openapi.json").json
    path = document["paths"]["/api/v1/market-points/{code}/stock/{day}"]
    assert set(path) >= {"get", "put"}
    assert "sold_out" in document["components"]["schemas"]["SlotOut"]["properties"]
    assert "packages" in document["components"]["schemas"]["BookingOut"]["properties"]
    assert "stock_below_reserved" in path["put"]["summary"] + path["put"]["description"]
    assert "stock_not_set" in path["get"]["summary"] + path["get"]["description"]
    booking = document["paths"]["/api/v1/bookings"]["post"]
    assert "sold_out" in booking["summary"] + booking["description"]


def test_cli_sets_and_shows_stock(app, make_slot):
    slot = make_slot(capacity=2, starts_in=120)
    runner = app.test_cli_runner()
    code, day = slot.market_point.code, slot_day(slot).isoformat()
    done = runner.invoke(args=["stock", "set", code, "--date", day, "--packages", "9"])
    assert done.exit_code == 0, done.output
    assert "9 packages, 1 per booking, 0 reserved, 9 left" in done.output
    shown = runner.invoke(args=["stock", "show", code, "--date", day])
    assert "9 packages" in shown.output
    bad = runner.invoke(
        args=["stock", "set", code, "--date", day, "--packages", "9", "--per-booking", "0"]
    )
    assert bad.exit_code == 1 and "invalid_stock" in bad.output
    assert (
        runner.invoke(
            args=["stock", "set", code, "--date", "03-12-2026", "--packages", "1"]
        ).exit_code
        == 2
    )
    db.session.expire_all()
    assert db.session.scalar(select(Stock.packages)) == 9


def test_admin_page_sets_stock(client, make_slot, make_user):
    from tests.admin.test_admin import login

    slot = make_slot(capacity=2, starts_in=120)
    make_user("admin@antri.test", "admin")
    login(client, "admin@antri.test")
    day = slot_day(slot).isoformat()
    answer = client.post(
        f"/admin/points/{slot.market_point.code}/stock",
        data={"day": day, "packages": "12", "per_booking": "2"},
    )
    assert answer.status_code == 302
    page = client.get(f"/admin/points/{slot.market_point.code}")
    assert f"<td>{day}</td><td>12</td><td>2</td><td>0</td><td>12</td>" in page.text
    bad = client.post(
        f"/admin/points/{slot.market_point.code}/stock",
        data={"day": day, "packages": "-3", "per_booking": "2"},
    )
    assert bad.status_code == 422
    db.session.expire_all()
    assert db.session.scalar(select(Stock.packages)) == 12


def _stock_errors(page) -> dict[str, list[str]]:
    """The stock form's fields and the errors shown beside each (``_field.html``)."""
    form = page.text[page.text.index("/stock") :]
    found = {}
    for name in ("day", "packages", "per_booking"):
        block = re.search(
            rf'<label for="{name}">.*?<input[^>]*>(.*?)</div>\s*(?:<div>|<button)', form, re.S
        )
        found[name] = re.findall(r'<div class="flash error">(.*?)</div>', block.group(1))
    return found


@pytest.mark.parametrize("lang", ["id", "en"])
def test_admin_stock_form_refuses_beside_the_field_never_a_500(
    client, make_slot, make_user, nik, lang
):
    """A far date was a 500 (OverflowError in the zone maths) and 1900-01-01 was saved;
    a refusal was one flash for every field after a redirect that lost the input."""
    from tests.admin.test_admin import login

    slot = make_slot(capacity=3, starts_in=120)
    make_user("admin@antri.test", "admin")
    login(client, "admin@antri.test")
    url = f"/admin/points/{slot.market_point.code}/stock"
    assert client.get(f"/admin/points/{slot.market_point.code}?lang={lang}").status_code == 200
    day = slot_day(slot).isoformat()
    for far in ("9999-12-31", "1900-01-01", "2101-01-01"):
        answer = client.post(url, data={"day": far, "packages": "5", "per_booking": "1"})
        assert answer.status_code == 422, far
        errors = _stock_errors(answer)
        assert errors["day"] and not errors["packages"], (far, errors)
        assert errors["day"] == [
            {
                "id": "Isi tanggal antara tahun 2000 dan 2100.",
                "en": "Give a date between the years 2000 and 2100.",
            }[lang]  # fmt: skip
        ]
    answer = client.post(url, data={"day": day, "packages": "abc", "per_booking": "0"})
    errors = _stock_errors(answer)
    assert answer.status_code == 422 and errors["packages"] and errors["per_booking"]
    assert not errors["day"]
    assert db.session.scalar(select(func.count(Stock.id))) == 0
    # Below what is reserved: 409 beside the packages, with the count.
    assert (
        client.post(url, data={"day": day, "packages": "3", "per_booking": "1"}).status_code == 302
    )
    assert _book(client, slot, nik).status_code == 201
    assert _book(client, slot, nik).status_code == 201
    lower = client.post(url, data={"day": day, "packages": "1", "per_booking": "1"})
    assert lower.status_code == 409
    packages = _stock_errors(lower)["packages"]
    assert packages[-1] == {"id": "Dipesan sekarang: 2.", "en": "Reserved now: 2."}[lang], packages
    db.session.expire_all()
    assert db.session.scalar(select(Stock.packages)) == 3
    assert (
        db.session.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.action == "stock.set"))
        == 1
    )

"""Stock's surfaces (issue 15 part 1): the handout at the gate (online, offline sync,
replay, undo), the scan answer's ``handout``, the occupancy ``stock`` field, the
supervisors' column and 90% alert, the CSV's stock columns, and the resident pages'
Habis. Run on SQLite and PostgreSQL (the ``app`` fixture).

Bookings go through the API, which reserves their packages (``slots.stock``); a test
that needs another count gives the booking K packages as a reservation would leave it
(``reserve``): ``booking.packages`` = K and the point-day's ``reserved`` moved to match.
"""

from __future__ import annotations

import csv
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from checkin.models import Scan
from common.audit import AuditEntry
from common.errors import DomainError
from common.timeutil import local_date, utcnow
from extensions import db
from slots.models import Booking, MarketPoint, Slot, Stock
from slots.stock import slot_day
from tests.servers import gunicorn, post_json


def set_stock(point: MarketPoint, day, packages: int, per_booking: int = 1, reserved: int = 0):
    """A stock row as A's setting would write it (counts of packages)."""
    row = Stock(
        market_point_id=point.id,
        day=day,
        packages=packages,
        per_booking=per_booking,
        reserved=reserved,
        handed_out=0,
    )
    db.session.add(row)
    db.session.commit()
    return row


def reserve(code: str, packages: int) -> None:
    """Make booking ``code`` hold ``packages`` of its point-day's stock instead of what
    its booking reserved, as a booking that reserved them leaves the rows."""
    booking = db.session.scalar(select(Booking).where(Booking.code == code))
    slot = db.session.get(Slot, booking.slot_id)
    day = slot_day(slot)
    change = packages - booking.packages
    db.session.execute(update(Booking).where(Booking.id == booking.id).values(packages=packages))
    db.session.execute(
        update(Stock)
        .where(Stock.market_point_id == slot.market_point_id, Stock.day == day)
        .values(reserved=Stock.reserved + change)
    )
    db.session.commit()


def stock_row(point_id: int) -> Stock:
    db.session.expire_all()
    return db.session.scalar(select(Stock).where(Stock.market_point_id == point_id))


def booking_row(code: str) -> Booking:
    db.session.expire_all()
    return db.session.scalar(select(Booking).where(Booking.code == code))


@pytest.fixture
def gate(app, client, make_slot, make_user, nik, monkeypatch):
    """A running slot at a point with 10 packages today at 2 a booking, a staff token
    there, a supervisor token, and helpers to book (with packages) and scan. Arrival
    waves are off: every booking may be scanned from the slot's start (the waves'
    own window is tested in tests/slots/test_waves.py)."""
    monkeypatch.setitem(app.config, "ARRIVAL_WAVE_MINUTES", 0)
    slot = make_slot(capacity=20, starts_in=-5, minutes=30)
    point = slot.market_point
    set_stock(point, slot_day(slot), packages=10, per_booking=2)
    _, token = make_user("gate@antri.test", "staff", point)
    _, boss = make_user("boss@antri.test", "supervisor")

    class Gate:
        point_id = point.id
        point_code = point.code
        slot_id = slot.id
        headers = {"Authorization": f"Bearer {token}"}
        boss_headers = {"Authorization": f"Bearer {boss}"}

        @staticmethod
        def book(packages: int = 2, slot_id=slot.id):
            response = client.post(
                "/api/v1/bookings",
                json={"slot_id": slot_id, "name": "Rina", "nik": nik(), "phone": "081234567890"},
            )
            assert response.status_code == 201, response.json
            if packages != response.json["packages"]:
                reserve(response.json["code"], packages)
            return response.json

        @classmethod
        def scan(cls, path="/api/v1/checkin", **body):
            return client.post(path, json=body, headers=cls.headers)

    return Gate


# The handout at the gate ------------------------------------------------------------


def test_an_admission_hands_out_once_and_a_replay_or_check_out_hands_out_nothing(gate):
    booking = gate.book(packages=2)
    first = gate.scan(ticket=booking["ticket"], device="g-1", nonce="h-1")
    assert first.status_code == 200, first.json
    assert (first.json["result"], first.json["handout"]) == ("admitted", {"packages": 2})
    row = booking_row(booking["code"])
    assert row.handed_out_at is not None and row.handed_out_at == row.checked_in_at
    assert (stock_row(gate.point_id).reserved, stock_row(gate.point_id).handed_out) == (2, 2)

    # The same nonce again: the first answer, handout included, and nothing handed twice.
    again = gate.scan(ticket=booking["ticket"], device="g-1", nonce="h-1").json
    assert (again["replayed"], again["handout"]) == (True, {"packages": 2})
    # Another scan of the used ticket is refused and hands out nothing.
    other = gate.scan(code=booking["code"], device="g-1", nonce="h-2").json
    assert (other["reason"], other["handout"]) == ("already_checked_in", None)
    out = gate.scan("/api/v1/checkout", code=booking["code"], device="g-1").json
    assert (out["result"], out["handout"]) == ("checked_out", None)
    assert stock_row(gate.point_id).handed_out == 2
    assert booking_row(booking["code"]).handed_out_at == row.handed_out_at


@pytest.mark.slow
def test_racing_gates_hand_each_booking_out_once(app, gate, tmp_path):
    """Two gates scan each of 8 tickets at the same moment, all 16 requests at once,
    through 4 gunicorn workers: 8 admissions, each handing over its 2 packages once."""
    env = {
        "ANTRI_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": app.config["SECRET_KEY"],
        "NIK_HASH_KEY": app.config["NIK_HASH_KEY"],
        "TICKET_KEY_DIR": app.config["TICKET_KEY_DIR"],
        "RATELIMIT_ENABLED": "false",
        "REDIS_URL": "",
    }
    db.session.execute(update(Stock).values(packages=20))
    db.session.commit()
    tickets = [gate.book(packages=2)["ticket"] for _ in range(8)]
    jobs = [(t, device) for t in range(len(tickets)) for device in ("gate-a", "gate-b")]
    barrier = threading.Barrier(len(jobs))

    def scan(job: tuple[int, str]) -> tuple[int, dict]:
        index, device = job
        barrier.wait()
        return post_json(
            f"{url}/api/v1/checkin",
            {"ticket": tickets[index], "device": device, "nonce": f"{device}-{index}"},
            gate.headers,
        )

    log = tmp_path / "gunicorn.log"
    with (
        gunicorn(env, workers=4, threads=4, log=log) as url,
        ThreadPoolExecutor(max_workers=len(jobs)) as pool,
    ):
        answers = list(pool.map(scan, jobs))
    assert [status for status, _ in answers] == [200] * len(jobs), answers
    handouts = [body["handout"] for _, body in answers if body["result"] == "admitted"]
    assert handouts == [{"packages": 2}] * 8
    refused = [body for _, body in answers if body["result"] != "admitted"]
    assert [(b["reason"], b["handout"]) for b in refused] == [("already_checked_in", None)] * 8
    row = stock_row(gate.point_id)
    assert (row.reserved, row.handed_out) == (16, 16)
    db.session.expire_all()
    assert (
        db.session.scalar(select(func.count(Booking.id)).where(Booking.handed_out_at.is_not(None)))
        == 8
    )


def test_a_booking_without_packages_gets_a_null_handout(gate, client, make_slot, make_user, nik):
    none_reserved = gate.book(packages=0)
    answer = gate.scan(code=none_reserved["code"]).json
    assert (answer["result"], answer["handout"]) == ("admitted", None)
    assert booking_row(none_reserved["code"]).handed_out_at is None
    assert stock_row(gate.point_id).handed_out == 0
    refused = gate.scan(code="ACDEFGHJ").json
    assert (refused["result"], refused["handout"]) == ("refused", None)


def test_an_undone_check_in_gives_the_packages_back(gate, client):
    booking = gate.book(packages=2)
    gate.book(packages=2)  # another booking's reservation stays untouched
    assert gate.scan(code=booking["code"]).json["handout"] == {"packages": 2}
    assert stock_row(gate.point_id).handed_out == 2

    undone = client.post(f"/api/v1/checkins/{booking['code']}/undo", headers=gate.boss_headers)
    assert undone.status_code == 200, undone.json
    assert (undone.json["result"], undone.json["handout"]) == ("undone", None)
    row = stock_row(gate.point_id)
    assert (row.reserved, row.handed_out) == (4, 0)  # reserved still: it may come again
    assert booking_row(booking["code"]).handed_out_at is None
    audit = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "checkin.undo"))
    assert '"packages_given_back": 2' in audit.after

    # Admitted again: handed out again, once.
    assert gate.scan(code=booking["code"]).json["handout"] == {"packages": 2}
    assert stock_row(gate.point_id).handed_out == 2


def _offline(nonce: str, scanned: str, minutes_ago: int, **extra) -> dict:
    at = (utcnow() - timedelta(minutes=minutes_ago)).isoformat()
    return {"nonce": nonce, "scanned_at": at, "ticket": scanned, "direction": "in",
            "local_result": "admitted", **extra}  # fmt: skip


def test_offline_admissions_hand_out_at_the_scan_instant_once(gate, client):
    one, two, cancelled = gate.book(packages=2), gate.book(packages=2), gate.book(packages=2)
    snapshot = client.get("/api/v1/gate/sync", headers=gate.headers).json
    packages = {b["code"]: b["packages"] for b in snapshot["bookings"]}
    assert packages == {one["code"]: 2, two["code"]: 2, cancelled["code"]: 2}
    # The QR payload stays as it was: the snapshot, not the ticket, carries packages.
    assert len(one["ticket"]) == len(gate.book(packages=0)["ticket"])

    db.session.execute(
        update(Booking).where(Booking.code == cancelled["code"]).values(status="cancelled")
    )
    db.session.commit()
    batch = {
        "device": "gate-offline",
        "scans": [
            _offline("o-1", one["ticket"], 4),
            _offline("o-2", two["code"], 3),
            _offline("o-3", cancelled["ticket"], 2),
        ],
    }
    synced = client.post("/api/v1/checkin/sync", json=batch, headers=gate.headers)
    assert synced.status_code == 200, synced.json
    results = {r["nonce"]: (r["result"], r["conflict"]) for r in synced.json["results"]}
    assert results == {
        "o-1": ("admitted", None),
        "o-2": ("admitted", None),
        "o-3": ("refused", "cancelled"),
    }
    assert stock_row(gate.point_id).handed_out == 4
    first = booking_row(one["code"])
    scanned = db.session.scalar(select(Scan.scanned_at).where(Scan.nonce == "o-1"))
    assert first.handed_out_at == scanned == first.checked_in_at
    assert booking_row(cancelled["code"]).handed_out_at is None

    # The same batch resent: answered from the log, nothing handed out twice.
    again = client.post("/api/v1/checkin/sync", json=batch, headers=gate.headers).json
    assert all(r["replayed"] for r in again["results"])
    assert stock_row(gate.point_id).handed_out == 4


def test_the_gate_page_says_how_many_packages_to_hand_over(gate, client):
    booking = gate.book(packages=2)
    login = client.post("/login", data={"email": "gate@antri.test", "password": "correct-horse-1"})
    assert login.status_code == 302
    page = client.post(
        "/gate", data={"scan": booking["code"], "direction": "in", "nonce": "0" * 32}
    )
    assert page.status_code == 200
    assert 'data-result="admitted"' in page.text
    assert 'data-handout="2">Serahkan 2 paket<' in page.text
    config = client.get("/gate").text
    assert '"handout_other": "Serahkan %(num)s paket"' in config


def test_the_openapi_document_describes_handout_and_stock(client):
    document = client.get("/api/v1/openapi.json").json
    text = str(document)
    schemas = document["components"]["schemas"]
    assert "handout" in schemas["ScanOut"]["properties"]
    assert set(schemas["StockLevelOut"]["properties"]) == {
        "packages",
        "reserved",
        "handed_out",
        "left",
    }
    assert "stock" in schemas["OccupancyOut"]["properties"]
    assert "stock" in schemas["OverviewOut"]["properties"]
    assert "packages" in schemas["GateBooking"]["properties"]
    assert "HandoutOut" in text


# Supervisors ------------------------------------------------------------------------


def test_occupancy_and_overview_carry_stock_and_the_90_percent_alert(
    client, make_point, make_slot, make_user, nik
):
    near = make_point(code="JKT-960", name="Pasar Hampir")
    below = make_point(code="JKT-961", name="Pasar Cukup")
    make_point(code="JKT-962", name="Pasar Tanpa Stok")
    today = local_date(utcnow(), "Asia/Jakarta")
    set_stock(near, today, packages=10, reserved=9)
    set_stock(below, today, packages=10, reserved=8)
    set_stock(below, today + timedelta(days=1), packages=10, reserved=10)  # not today
    _, boss = make_user("boss@antri.test", "supervisor")
    headers = {"Authorization": f"Bearer {boss}"}

    rows = {
        r["market_point"]["code"]: r for r in client.get("/api/v1/occupancy", headers=headers).json
    }
    assert rows["JKT-960"]["stock"] == {"packages": 10, "reserved": 9, "handed_out": 0, "left": 1}
    assert rows["JKT-961"]["stock"] == {"packages": 10, "reserved": 8, "handed_out": 0, "left": 2}
    assert rows["JKT-962"]["stock"] is None

    overview = {
        r["market_point"]["code"]: r
        for r in client.get("/api/v1/occupancy/overview", headers=headers).json
    }
    assert overview["JKT-960"]["alerts"] == ["nearly_sold_out"]
    assert overview["JKT-961"]["alerts"] == [] and overview["JKT-962"]["stock"] is None

    client.post("/login", data={"email": "boss@antri.test", "password": "correct-horse-1"})
    page = client.get("/supervisor").text
    assert 'data-alert="nearly_sold_out"' in page
    assert "Pasar Hampir: 9 dari 10 paket sudah dipesan hari ini; stok hampir habis." in page
    assert "Pasar Cukup:" not in page  # 80%: no alert
    row = page[page.index('data-point="JKT-960"') :]
    row = row[: row.index("</tr>")]
    assert 'data-stock="set"' in row
    assert '<strong data-stock-field="left">1</strong>' in row
    assert 'data-stock-field="reserved">9<' in row and 'data-stock-field="handed_out">0<' in row
    empty = page[page.index('data-point="JKT-962"') :]
    empty = empty[: empty.index("</tr>")]
    assert 'data-stock="none"' in empty and "<span data-stock-none>—</span>" in empty
    assert 'data-msg-stock="{name}: {reserved} dari {packages} paket' in page

    detail = client.get("/supervisor/points/JKT-960").text
    assert 'data-stock-field="reserved">9<' in detail and 'data-alert="nearly_sold_out"' in detail
    tomorrow = client.get(f"/supervisor/points/JKT-961?date={today + timedelta(days=1)}").text
    assert 'data-stock-field="left">0<' in tomorrow


def test_a_handout_reaches_the_overview_row(gate, client):
    booking = gate.book(packages=2)
    gate.scan(code=booking["code"])
    [row] = client.get(
        f"/api/v1/occupancy/overview?market_point={gate.point_code}", headers=gate.boss_headers
    ).json
    assert row["stock"] == {"packages": 10, "reserved": 2, "handed_out": 2, "left": 8}


def test_the_csv_adds_packages_and_the_days_totals_at_the_end(gate, client):
    handed = gate.book(packages=2)
    waiting = gate.book(packages=2)
    gate.scan(code=handed["code"])
    day = local_date(utcnow(), "Asia/Jakarta")
    answer = client.get(
        f"/api/v1/exports/bookings.csv?date={day}&market_point={gate.point_code}",
        headers=gate.boss_headers,
    )
    assert answer.status_code == 200
    reader = csv.reader(io.StringIO(answer.data.decode("utf-8-sig")))
    header = next(reader)
    assert header[:10] == [
        "booking_code", "market_point", "date", "slot_start", "slot_end", "status", "nik",
        "booked_at", "checked_in_at", "checked_out_at",
    ]  # fmt: skip
    assert header[10:] == [
        "packages", "handed_out_at", "stock_packages", "stock_reserved", "stock_handed_out",
        "channel",
    ]  # fmt: skip
    rows = {r[0]: dict(zip(header, r, strict=True)) for r in reader}
    given = rows[handed["code"]]
    assert given["packages"] == "2" and given["handed_out_at"] == given["checked_in_at"] != ""
    assert (rows[waiting["code"]]["packages"], rows[waiting["code"]]["handed_out_at"]) == ("2", "")
    for r in rows.values():
        assert (r["stock_packages"], r["stock_reserved"], r["stock_handed_out"]) == ("10", "4", "2")


def test_the_csv_leaves_stock_empty_on_a_day_without_stock(client, make_slot, make_user, nik):
    slot = make_slot(capacity=3, starts_in=-5)
    _, boss = make_user("boss@antri.test", "supervisor")
    client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Rina", "nik": nik(), "phone": "081234567890"},
    )
    day = local_date(utcnow(), "Asia/Jakarta")
    text = client.get(
        f"/api/v1/exports/bookings.csv?date={day}", headers={"Authorization": f"Bearer {boss}"}
    ).data.decode("utf-8-sig")
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["packages"] == "0"
    assert (row["handed_out_at"], row["stock_packages"], row["stock_reserved"]) == ("", "", "")


# Residents: Habis ---------------------------------------------------------------------


@pytest.fixture
def sold_out_day(client, make_point, make_slot):
    """Tomorrow at one point: two slots with places left, its stock all reserved;
    the day after: a slot, stock left."""
    point = make_point(code="JKT-970", name="Pasar Senen Blok C")
    early = make_slot(capacity=5, starts_in=24 * 60, point=point)
    late = make_slot(capacity=5, starts_in=24 * 60 + 60, point=point)
    later = make_slot(capacity=5, starts_in=48 * 60, point=point)
    day = slot_day(early)
    set_stock(point, day, packages=4, per_booking=2, reserved=3)  # 1 left < 2: sold out
    set_stock(point, slot_day(later), packages=4, per_booking=2, reserved=2)
    return point, day, early, late, later


def test_the_market_page_shows_a_sold_out_day_as_habis(client, sold_out_day):
    point, day, early, late, later = sold_out_day
    page = client.get(f"/points/{point.code}?date={day}").text
    link = page[page.index(f'data-day="{day}"') :]
    link = link[: link.index("</a>")]
    assert "data-sold-out" in link and '<span class="n">Habis</span>' in link
    assert 'id="sold-out"' in page
    cards = page.split('<div class="card slot"')[1:]
    assert len(cards) == 2 and all("data-sold-out" in c and ">Habis<" in c for c in cards)
    assert f"/slots/{early.id}/book" not in page and f"/slots/{late.id}/book" not in page
    assert f"/slots/{early.id}/waiting-list" in page and f"/slots/{late.id}/waiting-list" in page
    # Without a day asked for, the page opens on the first day with stock left.
    first = client.get(f"/points/{point.code}").text
    assert f'<h2 data-date="{slot_day(later)}">' in first
    assert f"/slots/{later.id}/book" in first
    with client.application.app_context():  # a fresh context: Babel caches the locale
        english = client.get(f"/points/{point.code}?date={day}&lang=en").text
    assert english.count(">Sold out<") == 3 and "Habis" not in english  # a link, two slots


def test_a_sold_out_days_booking_link_leads_to_the_open_waiting_list(client, sold_out_day, nik):
    point, day, early, late, later = sold_out_day
    book = client.get(f"/slots/{early.id}/book")
    assert book.status_code == 303
    assert book.headers["Location"].endswith(f"/slots/{early.id}/waiting-list")
    waiting = client.get(f"/slots/{early.id}/waiting-list")
    assert waiting.status_code == 200 and 'id="sold-out"' in waiting.text
    joined = client.post(
        f"/slots/{early.id}/waiting-list",
        data={"name": "Rina", "nik": nik(), "phone": "081234567890"},
    )
    assert joined.status_code == 302 and "/waiting/" in joined.headers["Location"]
    # A day with stock left books as before.
    assert client.get(f"/slots/{later.id}/book").status_code == 200
    assert client.get(f"/slots/{later.id}/waiting-list").status_code == 303


def test_a_booking_form_refused_sold_out_shows_the_message(client, sold_out_day, nik, monkeypatch):
    point, day, early, late, later = sold_out_day

    class SoldOut(DomainError):  # A's slots.errors.SoldOut has this code and status
        code = "sold_out"
        status = 409
        default_message = "Stok paket hari ini sudah habis."

    def refuse(*args, **kwargs):
        raise SoldOut()

    monkeypatch.setattr("slots.views.book_slot_once", refuse)
    answer = client.post(
        f"/slots/{later.id}/book",
        data={"name": "Rina", "nik": nik(), "phone": "081234567890", "request_id": "r-1"},
    )
    assert answer.status_code == 409
    assert (
        'data-error="sold_out"' in answer.text and "Stok paket hari ini sudah habis." in answer.text
    )
    assert f"/slots/{later.id}/waiting-list" in answer.text

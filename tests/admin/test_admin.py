"""Admin: points, schedules with a publish time, capacity, closures, moves, accounts,
assisted booking, the audit log; through the pages (CSRF on) and the admin API."""

from __future__ import annotations

import csv
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from common.audit import CLI, AuditEntry
from common.timeutil import day_text
from extensions import db
from slots.availability import list_slots
from slots.booking import book_slot, cancel_booking, find_booking
from slots.errors import InvalidMarketPoint, InvalidSchedule, SlotClosed, SlotNotFound, SlotOverlap
from slots.models import Booking, MarketPoint, Notice, Schedule, Slot, WaitingListEntry
from slots.points import POINT_CSV_COLUMNS, PointFields, import_points_csv, validate_point
from slots.schedules import create_schedule, generate_from_schedule, generate_slots, plan_schedule
from slots.staff import close_slot, move_booking, set_capacity
from tests.clock import today_local

JAKARTA = ZoneInfo("Asia/Jakarta")
PASSWORD = "correct-horse-1"


def login(client, email):
    answer = client.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 302, answer.text
    return client


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def book(client, slot_id, nik, phone="081234567890"):
    body = {"slot_id": slot_id, "name": "Siti", "nik": nik, "phone": phone}
    return client.post("/api/v1/bookings", json=body, buffered=True)


@pytest.fixture
def admin(make_user):
    return make_user("admin@antri.test", "admin")


# The admin API ---------------------------------------------------------------------


def test_patch_capacity_never_below_booked(client, make_slot, make_user, nik, admin):
    _, token = admin
    slot = make_slot(capacity=5, starts_in=180)
    for _ in range(3):
        assert book(client, slot.id, nik()).status_code == 201
    lower = client.patch(f"/api/v1/slots/{slot.id}", json={"capacity": 2}, headers=bearer(token))
    assert lower.status_code == 409
    assert lower.json["error"] == "capacity_below_booked" and lower.json["booked"] == 3
    ok = client.patch(f"/api/v1/slots/{slot.id}", json={"capacity": 3}, headers=bearer(token))
    assert ok.status_code == 200
    assert (ok.json["capacity"], ok.json["booked"], ok.json["remaining"]) == (3, 3, 0)
    assert book(client, slot.id, nik()).json["error"] == "slot_full"
    for bad in ({"capacity": -1}, {"capacity": "7"}, {"capacity": True}, {}, {"cap": 4}):
        answer = client.patch(f"/api/v1/slots/{slot.id}", json=bad, headers=bearer(token))
        assert (answer.status_code, answer.json["error"]) == (422, "invalid_capacity"), bad
    missing = client.patch("/api/v1/slots/999999", json={"capacity": 3}, headers=bearer(token))
    assert missing.status_code == 404
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "slot.capacity"))
    assert json.loads(entry.before) == {"capacity": 5}
    assert json.loads(entry.after)["capacity"] == 3 and entry.actor == "admin@antri.test"


def test_raising_capacity_promotes_the_waiting_list(client, make_slot, nik, admin, tmp_path):
    _, token = admin
    slot = make_slot(capacity=1, starts_in=180)
    book(client, slot.id, nik())
    join = client.post(
        f"/api/v1/slots/{slot.id}/waiting-list",
        json={"name": "Rudi", "nik": nik(), "phone": "081211110006"},
    )
    assert join.status_code == 201
    answer = client.patch(f"/api/v1/slots/{slot.id}", json={"capacity": 2}, headers=bearer(token))
    assert answer.json["booked"] == 2
    entry = db.session.scalar(select(WaitingListEntry))
    assert entry.status == "promoted"


def test_close_slot_cancels_every_booking_with_one_notice_each(client, make_slot, nik, admin):
    _, token = admin
    slot = make_slot(capacity=3, starts_in=180)
    codes = [book(client, slot.id, nik(), f"08121111000{n}").json["code"] for n in range(3)]
    client.post(
        f"/api/v1/slots/{slot.id}/waiting-list",
        json={"name": "Rudi", "nik": nik(), "phone": "081211110006"},
    )
    answer = client.post(f"/api/v1/slots/{slot.id}/close", headers=bearer(token), buffered=True)
    assert answer.status_code == 200
    assert answer.json == {"slot_id": slot.id, "cancelled": 3, "waiting_cleared": 1}
    db.session.expire_all()
    statuses = db.session.scalars(select(Booking.status).where(Booking.code.in_(codes))).all()
    assert statuses == ["cancelled"] * 3
    closed = db.session.execute(
        select(Notice.booking_id, Notice.status).where(Notice.kind == "slot_closed")
    ).all()
    assert len(closed) == 3 and {row.booking_id for row in closed} == set(
        db.session.scalars(select(Booking.id)).all()
    )
    # Cancelled bookings are owed no reminder: the relay writes none.
    from notify.outbox import write_due_reminders

    assert write_due_reminders(slot.starts_at - timedelta(minutes=30)) == 0
    assert db.session.get(Slot, slot.id).booked_count == 0
    assert db.session.scalar(select(WaitingListEntry.status)) == "expired"
    again = client.post(f"/api/v1/slots/{slot.id}/close", headers=bearer(token))
    assert again.json["cancelled"] == 0
    refused = book(client, slot.id, nik())
    assert (refused.status_code, refused.json["error"]) == (409, "slot_closed")
    day = slot.starts_at.astimezone(JAKARTA).date()
    listed = client.get(f"/api/v1/market-points/{slot.market_point.code}/slots?date={day}")
    assert slot.id not in [s["id"] for s in listed.json]


def test_admin_api_refuses_other_roles(client, make_slot, make_user, admin):
    slot = make_slot(capacity=3, starts_in=180)
    _, staff = make_user("staff@antri.test", "staff", slot.market_point)
    _, supervisor = make_user("super@antri.test", "supervisor")
    calls = [
        ("patch", f"/api/v1/slots/{slot.id}", {"capacity": 1}),
        ("post", f"/api/v1/slots/{slot.id}/close", None),
        ("post", "/api/v1/bookings/ACDEFGHJ/move", {"slot_id": slot.id}),
    ]
    for method, url, body in calls:
        for token in (staff, supervisor):
            answer = getattr(client, method)(url, json=body, headers=bearer(token))
            assert (answer.status_code, answer.json["error"]) == (403, "forbidden"), url
        assert getattr(client, method)(url, json=body).status_code == 401
    assert db.session.get(Slot, slot.id).capacity == 3
    assert db.session.get(Slot, slot.id).closed_at is None


def test_move_booking_within_capacity(client, make_slot, nik, admin, make_point):
    _, token = admin
    old = make_slot(capacity=2, starts_in=180)
    target = make_slot(capacity=1, starts_in=300)
    code = book(client, old.id, nik()).json["code"]
    moved = client.post(
        f"/api/v1/bookings/{code}/move", json={"slot_id": target.id}, headers=bearer(token)
    )
    assert moved.status_code == 200 and moved.json["code"] == code
    db.session.expire_all()
    booking = db.session.scalar(select(Booking).where(Booking.code == code))
    assert booking.slot_id == target.id
    assert (
        db.session.get(Slot, old.id).booked_count,
        db.session.get(Slot, target.id).booked_count,
    ) == (0, 1)
    notice = db.session.scalar(select(Notice).where(Notice.kind == "slot_moved"))
    assert notice.booking_id == booking.id
    reminder = db.session.scalar(select(Notice).where(Notice.kind == "reminder"))
    assert reminder.due_at == target.starts_at - timedelta(minutes=60)
    other = book(client, old.id, nik(), "081299990000").json["code"]
    full = client.post(
        f"/api/v1/bookings/{other}/move", json={"slot_id": target.id}, headers=bearer(token)
    )
    assert (full.status_code, full.json["error"]) == (409, "slot_full")
    same = client.post(
        f"/api/v1/bookings/{code}/move", json={"slot_id": target.id}, headers=bearer(token)
    )
    assert (same.status_code, same.json["error"]) == (409, "booking_not_movable")


def test_a_booking_moved_into_a_slot_starting_soon_gets_no_reminder(client, make_slot, nik, admin):
    from notify.outbox import write_due_reminders

    _, token = admin
    old = make_slot(capacity=2, starts_in=300)
    soon = make_slot(capacity=2, starts_in=40)
    code = book(client, old.id, nik()).json["code"]
    moved = client.post(
        f"/api/v1/bookings/{code}/move", json={"slot_id": soon.id}, headers=bearer(token)
    )
    assert moved.status_code == 200
    # The slot_moved message tells the new time; the relay writes no reminder after it.
    assert write_due_reminders(soon.starts_at - timedelta(minutes=30)) == 0
    db.session.expire_all()
    kinds = db.session.execute(
        select(Notice.kind, Notice.status).join(Booking).where(Booking.code == code)
    ).all()
    assert sorted(kind for kind, _ in kinds) == ["confirmation", "reminder", "slot_moved"]
    assert dict(kinds)["reminder"] == "void"


def _race(app, slot_id, niks, capacities):
    """Book and cut capacity at the same time from several threads, each its own
    session and connection."""

    def booking(person):
        with app.app_context():
            try:
                book_slot(slot_id, "Siti", person, "081234567890")
                db.session.commit()
                return "booked"
            except Exception as exc:  # noqa: BLE001
                db.session.rollback()
                return getattr(exc, "code", type(exc).__name__)
            finally:
                db.session.remove()

    def cut(capacity):
        with app.app_context():
            try:
                set_capacity(slot_id, capacity, CLI)
                db.session.commit()
                return f"cap={capacity}"
            except Exception as exc:  # noqa: BLE001
                db.session.rollback()
                return getattr(exc, "code", type(exc).__name__)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=8) as pool:
        jobs = [pool.submit(booking, person) for person in niks]
        jobs += [pool.submit(cut, capacity) for capacity in capacities]
        return [job.result() for job in jobs]


def test_capacity_cuts_racing_bookings_never_leave_more_booked_than_capacity(
    app, ctx, make_slot, nik
):
    for _ in range(3):
        slot = make_slot(capacity=30, starts_in=180 + _ * 60)
        results = _race(app, slot.id, [nik() for _ in range(24)], [20, 12, 8, 16, 10])
        db.session.expire_all()
        final = db.session.get(Slot, slot.id)
        active = db.session.scalar(
            select(func.count(Booking.id)).where(
                Booking.slot_id == slot.id, Booking.status == "confirmed"
            )
        )
        assert active == final.booked_count <= final.capacity
        assert results.count("booked") == active
        assert set(results) <= {
            "booked",
            "slot_full",
            "capacity_below_booked",
            "cap=20",
            "cap=12",
            "cap=8",
            "cap=16",
            "cap=10",
            "busy",
            "OperationalError",
        }


# Schedules and the publish time ----------------------------------------------------------


def _schedule(point, start_day, **overrides):
    values = dict(
        name="Pagi",
        weekdays="1234567",
        start_time=time(9, 0),
        end_time=time(10, 0),
        slot_minutes=30,
        capacity=10,
        valid_from=start_day,
        valid_until=start_day + timedelta(days=1),
        publish_days_before=1,
        publish_time=time(7, 0),
        actor=CLI,
    )
    values.update(overrides)
    return create_schedule(point.code, **values)


def test_schedule_preview_generate_idempotent_and_publish_time(ctx, make_point, nik):
    point = make_point()
    day = today_local(3)
    schedule = _schedule(point, day)
    db.session.commit()
    planned = plan_schedule(schedule)
    assert [p.starts_at.astimezone(JAKARTA).strftime("%d %H:%M") for p in planned] == [
        f"{day:%d} 09:00",
        f"{day:%d} 09:30",
        f"{day + timedelta(days=1):%d} 09:00",
        f"{day + timedelta(days=1):%d} 09:30",
    ]
    opens = datetime.combine(day - timedelta(days=1), time(7, 0), JAKARTA)
    assert planned[0].publish_at == opens
    assert db.session.scalar(select(func.count(Slot.id))) == 0  # a preview writes nothing
    assert generate_from_schedule(schedule.id, CLI) == (4, 0)
    db.session.commit()
    assert generate_from_schedule(schedule.id, CLI) == (0, 4)
    db.session.commit()
    assert db.session.scalar(select(func.count(Slot.id))) == 4
    first = db.session.scalar(select(Slot).order_by(Slot.starts_at))
    # Invisible and unbookable until 07:00 WIB the day before, then open.
    before, at = opens - timedelta(seconds=1), opens
    assert list_slots(point, day, before) == []
    with pytest.raises(SlotNotFound):
        book_slot(first.id, "Siti", nik(), "081234567890", now=before)
    assert [s.id for s in list_slots(point, day, at)][:1] == [first.id]
    booking = book_slot(first.id, "Siti", nik(), "081234567890", now=at)
    assert booking.status == "confirmed"


def test_schedule_faults_and_overlaps(ctx, make_point):
    point = make_point()
    day = today_local(3)
    faults = {
        "weekdays": {"weekdays": "8"},
        "hours": {"end_time": time(8, 0)},
        "slot_minutes": {"slot_minutes": 90},
        "capacity": {"capacity": -1},
        "dates": {"valid_until": day - timedelta(days=1)},
        "publish": {"publish_days_before": -1},
    }
    for fault, change in faults.items():
        with pytest.raises(InvalidSchedule) as caught:
            _schedule(point, day, **change)
        assert caught.value.details["fault"] == fault
    generate_slots(point, day, time(9, 15), time(9, 45), 30, 5)
    schedule = _schedule(point, day)
    db.session.commit()
    with pytest.raises(SlotOverlap):
        generate_from_schedule(schedule.id, CLI)
    db.session.rollback()
    assert db.session.scalar(select(func.count(Slot.id))) == 1


# Pages: CSRF, roles, and each action ----------------------------------------------------


def _csrf(client, url):
    page = client.get(url)
    assert page.status_code == 200, url
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)


@pytest.fixture
def csrf_on(app, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)


def test_admin_creates_a_schedule_and_its_slots_through_the_pages(
    app, client, make_point, make_user, csrf_on
):
    point = make_point()
    make_user("admin@antri.test", "admin")
    login_with_csrf(client, "admin@antri.test")
    token = _csrf(client, "/admin/schedules")
    day = today_local(2)
    form = {
        "point": point.code,
        "name": "Operasi pasar",
        "weekdays": ["1", "2", "3", "4", "5", "6", "7"],
        "start_time": "08:00",
        "end_time": "09:00",
        "slot_minutes": "30",
        "capacity": "15",
        "valid_from": day.isoformat(),
        "valid_until": day.isoformat(),
        "publish_days_before": "1",
        "publish_time": "07:00",
    }
    refused = client.post("/admin/schedules", data=form)
    assert refused.status_code == 400  # no CSRF token
    created = client.post("/admin/schedules", data={**form, "csrf_token": token})
    assert created.status_code == 302
    schedule = db.session.scalar(select(Schedule))
    preview = client.get(created.location)
    assert "08:00–08:30" in preview.text and "08:30–09:00" in preview.text
    # The page's one date style (issue 14 item 12): "Jumat, 4 Des 2026 07:00 WIB".
    assert f"{day_text(day - timedelta(days=1), locale='id')} 07:00 WIB" in preview.text
    generated = client.post(
        f"/admin/schedules/{schedule.id}/generate",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "2 slots created" in generated.text or "2 jadwal dibuat" in generated.text
    slots = db.session.scalars(select(Slot)).all()
    assert [s.capacity for s in slots] == [15, 15]
    actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["schedule.create", "schedule.generate"]


def login_with_csrf(client, email):
    token = _csrf(client, "/login")
    answer = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 302


ADMIN_PAGES = [
    "/admin/",
    "/admin/points",
    "/admin/points/JKT-900",
    "/admin/points.csv",
    "/admin/schedules",
    "/admin/slots",
    "/admin/accounts",
    "/admin/audit",
    "/admin/audit.csv",
    "/admin/notices",
]
ADMIN_POSTS = [
    "/admin/points",
    "/admin/points/JKT-900",
    "/admin/points/JKT-900/active",
    "/admin/points/import",
    "/admin/schedules",
    "/admin/schedules/1/generate",
    "/admin/slots/1/capacity",
    "/admin/slots/1/close",
    "/admin/points/JKT-900/close-day",
    "/admin/points/JKT-900/stock",
    "/admin/bookings/move",
    "/admin/accounts",
    "/admin/accounts/1/active",
    "/admin/accounts/1/password",
    "/admin/accounts/1/point",
    "/admin/tokens/1/revoke",
    "/admin/notices/retry",
]


def test_role_by_route_matrix(app, client, make_slot, make_user):
    slot = make_slot(capacity=3, starts_in=180)
    make_user("admin@antri.test", "admin")
    make_user("staff@antri.test", "staff", slot.market_point)
    make_user("super@antri.test", "supervisor")
    for url in ADMIN_PAGES:
        answer = client.get(url)
        assert answer.status_code == 302 and "/login" in answer.location, url
    for url in ADMIN_POSTS:
        answer = client.post(url, data={"active": "0", "capacity": "0", "password": "x" * 9})
        assert answer.status_code == 302 and "/login" in answer.location, url
    for email in ("staff@antri.test", "super@antri.test"):
        login(client, email)
        for url in ADMIN_PAGES:
            assert client.get(url).status_code == 403, (email, url)
        for url in ADMIN_POSTS:
            answer = client.post(url, data={"active": "0", "capacity": "0", "password": "x" * 9})
            assert answer.status_code == 403, (email, url)
        client.post("/logout")
    # Nothing changed.
    assert (
        db.session.get(Slot, slot.id).capacity == 3
        and db.session.get(Slot, slot.id).closed_at is None
    )
    assert db.session.scalar(select(func.count(AuditEntry.id))) == 0
    login(client, "admin@antri.test")
    for url in ADMIN_PAGES:
        assert client.get(url).status_code == 200, url


def test_points_pages_create_edit_deactivate_and_csv(client, make_point, make_user):
    point = make_point()
    make_user("admin@antri.test", "admin")
    login(client, "admin@antri.test")
    created = client.post(
        "/admin/points",
        data={
            "market_id": "777",
            "name": "Pasar Baru Uji",
            "kecamatan_code": "317104",
            "city": "Jakarta Pusat",
            "safe_limit": "25",
            "timezone": "Asia/Jakarta",
            "household_limit": "y",
        },
    )
    assert created.status_code == 302
    new = db.session.scalar(select(MarketPoint).where(MarketPoint.code == "JKT-777"))
    assert (new.safe_limit, new.household_limit, new.source_id) == (25, True, 777)
    bad = client.post(
        "/admin/points/JKT-777",
        data={"name": "Pasar Baru Uji", "safe_limit": "25", "timezone": "Mars/Olympus"},
    )
    assert bad.status_code == 200 and db.session.get(MarketPoint, new.id).timezone == "Asia/Jakarta"
    client.post("/admin/points/JKT-777/active", data={"active": "0"})
    db.session.expire_all()
    assert db.session.get(MarketPoint, new.id).active is False
    assert "JKT-777" not in client.get("/api/v1/market-points").text
    exported = client.get("/admin/points.csv")
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert list(rows[0]) == list(POINT_CSV_COLUMNS)
    assert {row["infopangan_market_id"] for row in rows} == {"900", "777"}
    assert next(r for r in rows if r["infopangan_market_id"] == "777")["note"] == "inactive"
    actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["point.create", "point.deactivate"]
    assert point.code == "JKT-900"


def test_import_points_refuses_a_bad_file_whole(ctx):
    text = (
        "name,address,kecamatan,city,latitude,longitude,kecamatan_code,infopangan_market_id,note\n"
    )
    good = text + "Pasar A,,Senen,Jakarta Pusat,-6.1,106.8,317104,501,\n"
    assert import_points_csv(good, CLI) == (1, 0)
    db.session.commit()
    bad = good + "Pasar B,,Senen,Jakarta Pusat,north,106.8,317104,502,\n"
    with pytest.raises(InvalidMarketPoint) as caught:
        import_points_csv(bad, CLI)
    assert caught.value.details == {"fault": "csv", "line": 3}
    db.session.rollback()
    assert db.session.scalar(select(func.count(MarketPoint.id))) == 1
    with pytest.raises(InvalidMarketPoint):
        import_points_csv("name,city\nX,Y\n", CLI)


def test_accounts_disable_revoke_and_reset_at_once(app, client, make_user, make_point):
    make_point()
    admin_user, _ = make_user("admin@antri.test", "admin")
    staff, token = make_user("super@antri.test", "supervisor")
    other = app.test_client()
    assert other.get("/api/v1/occupancy", headers=bearer(token)).status_code == 200
    login(client, "admin@antri.test")
    client.post(f"/admin/accounts/{staff.id}/active", data={"active": "0"})
    assert other.get("/api/v1/occupancy", headers=bearer(token)).status_code == 401
    client.post(f"/admin/accounts/{staff.id}/active", data={"active": "1"})
    assert other.get("/api/v1/occupancy", headers=bearer(token)).status_code == 200
    token_id = db.session.scalar(
        select(sa.text("id"))
        .select_from(sa.table("api_token"))
        .where(sa.text("user_id = :u"))
        .params(u=staff.id)
    )
    client.post(f"/admin/tokens/{token_id}/revoke")
    assert other.get("/api/v1/occupancy", headers=bearer(token)).status_code == 401
    short = client.post(
        f"/admin/accounts/{staff.id}/password", data={"password": "short"}, follow_redirects=True
    )
    assert "8" in short.text
    client.post(f"/admin/accounts/{staff.id}/password", data={"password": "a-new-password-2"})
    own = client.post(
        f"/admin/accounts/{admin_user.id}/active", data={"active": "0"}, follow_redirects=True
    )
    assert own.status_code == 200 and db.session.get(type(admin_user), admin_user.id).active
    # (Last: in tests every request shares one app context, so a second signed-in
    # client would change whose session the first one sees.)
    answer = other.post(
        "/login", data={"email": "super@antri.test", "password": "a-new-password-2"}
    )
    assert answer.status_code == 302
    actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == [
        "account.disable",
        "account.enable",
        "token.revoke",
        "account.password",
    ]
    assert "a-new-password-2" not in json.dumps(db.session.scalars(select(AuditEntry.after)).all())


def test_assisted_booking_for_a_resident_without_a_phone(
    client, make_slot, make_user, nik, make_point
):
    slot = make_slot(capacity=2, starts_in=60)
    elsewhere = make_slot(capacity=2, starts_in=60, point=make_point("JKT-901"))
    make_user("staff@antri.test", "staff", slot.market_point)
    login(client, "staff@antri.test")
    page = client.get("/admin/assist")
    assert page.status_code == 200 and slot.market_point.name in page.text
    person = nik()
    answer = client.post(
        "/admin/assist",
        data={
            "slot": str(slot.id),
            "name": "Mbah Sastro",
            "nik": person,
            "phone": "",
            "request_id": "a1",
        },
        buffered=True,
    )
    assert answer.status_code == 302 and "/tickets/" in answer.location
    booking = db.session.scalar(select(Booking))
    assert (booking.phone, booking.status, booking.slot_id) == ("", "confirmed", slot.id)
    assert db.session.scalar(select(Notice.status).where(Notice.kind == "confirmation")) == "void"
    # The same rules: the NIK's limit holds, and staff book only at their own point.
    again = client.post(
        "/admin/assist",
        data={"slot": str(slot.id), "name": "Mbah Sastro", "nik": person, "request_id": "a2"},
    )
    assert again.status_code == 409 and person not in again.text
    foreign = client.post(
        "/admin/assist?point=JKT-901",
        data={"slot": str(elsewhere.id), "name": "Ani", "nik": nik(), "request_id": "a3"},
    )
    assert foreign.status_code == 200 and "Pasar Uji JKT-901" not in foreign.text  # own point
    assert db.session.scalar(select(func.count(Booking.id))) == 1
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "booking.assist"))
    assert entry.actor == "staff@antri.test" and entry.target_id == booking.code
    assert entry.remote_addr == "127.0.0.1"  # the view's request, passed in the actor


# The audit log ------------------------------------------------------------------------


def test_audit_log_is_append_only_filterable_and_exportable(client, make_slot, make_user, backend):
    slot = make_slot(capacity=5, starts_in=180)
    make_user("admin@antri.test", "admin")
    set_capacity(slot.id, 7, CLI)
    close_slot(slot.id, CLI)
    db.session.commit()
    entry_id = db.session.scalar(select(AuditEntry.id).order_by(AuditEntry.id))
    for statement in (
        sa.update(AuditEntry).values(actor="someone else"),
        sa.delete(AuditEntry),
    ):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            db.session.execute(statement.where(AuditEntry.id == entry_id))
            db.session.flush()
        db.session.rollback()
    assert db.session.scalar(select(func.count(AuditEntry.id))) == 2
    wipes = ["TRUNCATE audit_entry"] if backend == "postgresql" else []
    wipes.append(
        "INSERT OR REPLACE INTO audit_entry (id, at, actor, action, target_type, target_id, "
        "before, after, remote_addr) VALUES (:id, '2026-01-01', 'x', 'y', 'z', '1', '{}', '{}', '')"
        if backend == "sqlite"
        else "INSERT INTO audit_entry (id, at, actor, action, target_type, target_id, before, "
        "after, remote_addr) VALUES (:id, now(), 'x', 'y', 'z', '1', '{}', '{}', '') "
        "ON CONFLICT (id) DO UPDATE SET actor = 'x'"
    )
    for statement in wipes:
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            db.session.execute(sa.text(statement), {"id": entry_id})
        db.session.rollback()
    assert db.session.get(AuditEntry, entry_id).actor == "cli"
    login(client, "admin@antri.test")
    page = client.get("/admin/audit?action=slot.close")
    assert (
        page.status_code == 200 and "slot.close" in page.text and "slot.capacity" not in page.text
    )
    exported = client.get("/admin/audit.csv?action=slot.")
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert [row["action"] for row in rows] == ["slot.close", "slot.capacity"]
    assert json.loads(rows[1]["before"]) == {"capacity": 5}
    assert client.get("/admin/audit?since=2026-99-99").status_code == 200


# Found by breaking it ------------------------------------------------------------------


def _counters_match(slot_ids):
    db.session.expire_all()
    for slot_id in slot_ids:
        slot = db.session.get(Slot, slot_id)
        active = db.session.scalar(
            select(func.count(Booking.id)).where(
                Booking.slot_id == slot_id,
                Booking.status.in_(("confirmed", "checked_in", "checked_out")),
            )
        )
        assert slot.booked_count == active <= slot.capacity, (slot_id, slot.booked_count, active)


def _in_threads(app, *actions):
    def run(action):
        with app.app_context():
            try:
                result = action()
                db.session.commit()
                return result
            except Exception as exc:  # noqa: BLE001
                db.session.rollback()
                return getattr(exc, "code", type(exc).__name__)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=len(actions)) as pool:
        return list(pool.map(run, actions))


def test_two_moves_of_one_booking_and_a_move_racing_a_cancel_keep_counts(app, ctx, make_slot, nik):
    for round_ in range(4):
        source = make_slot(capacity=3, starts_in=180 + round_ * 400)
        a = make_slot(capacity=2, starts_in=240 + round_ * 400)
        b = make_slot(capacity=2, starts_in=300 + round_ * 400)
        codes = [book_slot(source.id, "Siti", nik(), "081234567890").code for _ in range(3)]
        db.session.commit()
        ids = (source.id, a.id, b.id)
        first = codes[0]
        results = _in_threads(
            app,
            lambda first=first, a=a: move_booking(first, a.id, CLI).code,
            lambda first=first, b=b: move_booking(first, b.id, CLI).code,
        )
        # One after the other, on the booking's row lock: the second sees the first.
        assert set(results) <= {first, "booking_not_movable"} and first in results
        _counters_match(ids)

        second = codes[1]

        def cancel(second=second):
            cancel_booking(find_booking(second))
            return "cancelled"

        results = _in_threads(
            app, lambda second=second, b=b: move_booking(second, b.id, CLI).code, cancel
        )
        assert "cancelled" in results or "cancel_not_allowed" in results
        _counters_match(ids)


def test_a_move_stays_at_its_point_and_within_the_limits(client, make_slot, make_point, nik, admin):
    _, token = admin
    here = make_slot(capacity=3, starts_in=180)
    there = make_slot(capacity=3, starts_in=240, point=make_point("JKT-901"))
    code = book(client, here.id, nik()).json["code"]
    moved = client.post(
        f"/api/v1/bookings/{code}/move", json={"slot_id": there.id}, headers=bearer(token)
    )
    assert (moved.status_code, moved.json["error"]) == (409, "booking_not_movable")
    # The same NIK: one booking now, another three weeks later; moving the later one
    # next to the first would give it two in seven days.
    person = nik()
    near = make_slot(capacity=3, starts_in=120)
    far = make_slot(capacity=3, starts_in=60 * 24 * 21)
    book(client, near.id, person)
    far_code = book(client, far.id, person, "081299990000").json["code"]
    close = make_slot(capacity=3, starts_in=360)
    refused = client.post(
        f"/api/v1/bookings/{far_code}/move", json={"slot_id": close.id}, headers=bearer(token)
    )
    assert (refused.status_code, refused.json["error"]) == (409, "limit_reached")
    unknown = client.post(
        "/api/v1/bookings/ACDEFGHJ/move", json={"slot_id": close.id}, headers=bearer(token)
    )
    assert unknown.status_code == 404 and "phone" not in unknown.json["message"]


def test_two_schedules_generated_at_once_never_overlap(app, ctx, make_point):
    point = make_point()
    day = today_local(3)
    morning = _schedule(point, day, start_time=time(10, 0), end_time=time(12, 0)).id
    shifted = _schedule(point, day, start_time=time(10, 15), end_time=time(12, 15)).id
    db.session.commit()
    results = _in_threads(
        app,
        lambda: generate_from_schedule(morning, CLI),
        lambda: generate_from_schedule(shifted, CLI),
    )
    assert sorted(map(str, results)) == sorted([str((8, 0)), "slot_overlap"])
    slots = db.session.scalars(select(Slot).order_by(Slot.starts_at)).all()
    assert len(slots) == 8
    assert all(a.ends_at <= b.starts_at for a, b in zip(slots, slots[1:], strict=False))


def test_admin_input_edges(app, client, make_point, make_slot, make_user, nik, admin):
    point = make_point()
    for zone_name in ("localtime", "Factory", "posix/Asia/Jakarta", "Etc/GMT-14", "Mars/Base"):
        fields = PointFields("Pasar", "", "", "", "", 10, zone_name, None, None, False)
        with pytest.raises(InvalidMarketPoint):
            validate_point(fields)
    header = ",".join(POINT_CSV_COLUMNS) + "\n"
    bad_rows = [
        "Pasar,,Senen,Jakarta,nan,106.8,317104,601,\n",
        "Pasar,,Senen,Jakarta,999,106.8,317104,602,\n",
        "Pasar,,Senen,Jakarta,-6.1,106.8,ABCDEF,603,\n",
        "Pasar,,Senen,Jakarta,-6.1,106.8,317104,604,\nPasar,,Senen,Jakarta,-6.1,106.8,317104,604,\n",
        "Pasar,,Senen,Jakarta,-6.1,106.8,317104,605,,extra\n",
        "Pa\x00sar,,Senen,Jakarta,-6.1,106.8,317104,606,\n",
    ]
    for rows in bad_rows:
        with pytest.raises(InvalidMarketPoint):
            import_points_csv(header + rows, CLI)
        db.session.rollback()
    assert import_points_csv(header + "Pasar X,,,,,,,607,inactive\n", CLI) == (1, 0)
    assert (
        db.session.scalar(select(MarketPoint.active).where(MarketPoint.code == "JKT-607")) is False
    )
    db.session.rollback()
    day = today_local(3)
    with pytest.raises(InvalidSchedule):
        _schedule(point, day, publish_days_before=0, publish_time=time(23, 0))
    slot = make_slot(capacity=3, starts_in=180)
    close_slot(slot.id, CLI)
    db.session.commit()
    with pytest.raises(SlotClosed):
        set_capacity(slot.id, 5, CLI)
    db.session.rollback()
    login(client, "admin@antri.test")
    for query in ("since=0001-01-01", "until=9999-12-31"):
        assert client.get(f"/admin/audit?{query}").status_code == 200
        assert client.get(f"/admin/audit.csv?{query}").status_code == 200
    done = app.test_cli_runner().invoke(args=["audit", "export", "--since", "0001-01-01"])
    assert done.exit_code == 2 and "2000" in done.output
    taken = client.post(
        "/admin/accounts",
        data={"email": "ADMIN@antri.test", "role": "staff", "point": point.code,
              "password": "another-pass-1"},
        follow_redirects=True,
    )  # fmt: skip
    assert taken.status_code == 200
    assert (
        db.session.scalar(select(AuditEntry.id).where(AuditEntry.action.like("account.%"))) is None
    )


def test_a_new_password_ends_the_old_sessions(app, client, make_user, admin):
    make_user("super@antri.test", "supervisor")
    other = app.test_client()
    login(other, "super@antri.test")
    assert other.get("/supervisor").status_code == 200
    from accounts.models import User
    from accounts.service import reset_password

    reset_password(
        db.session.scalar(select(User).where(User.role == "supervisor")), "fresh-pass-22", CLI
    )
    db.session.commit()
    # Tests share one app context across requests; a server gives each request its own,
    # so Flask-Login's cached user would not survive to the next request.
    from flask import g

    g.pop("_login_user", None)
    answer = other.get("/supervisor")
    assert answer.status_code == 302 and "/login" in answer.location

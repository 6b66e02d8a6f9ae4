"""Pickup by a proxy (issue 15 part 3): naming, replacing and removing a booking's proxy
through the API, the refusals, the per-day limit across points, the messages, the gate's
answer and scan log, the offline snapshot and the purge. On both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import func, select

from checkin.models import Scan
from checkin.offline import gate_snapshot
from common.timeutil import utcnow
from extensions import db
from notify.messages import render_notice
from slots.models import Booking, BookingProxy, Notice

PHONE = "081234567890"
# Valid NIKs of other people than the residents the ``nik`` fixture makes: Kec. Senen,
# women born 05-05-1988 and 06-06-1977 (day + 40).
PROXY_NIK = "3171044505880011"
OTHER_NIK = "3171044606770012"


def _proxy(name="Siti Aminah", nik=PROXY_NIK, phone=PHONE):
    return {"phone": phone, "proxy_name": name, "proxy_nik": nik}


@pytest.fixture
def book(client, make_slot, nik):
    """Book a slot (default: one starting in two hours today) and return its JSON."""
    default = make_slot(capacity=20, starts_in=330)

    def make(slot=None, phone=PHONE, name="Budi Santoso", resident_nik=None):
        body = {
            "slot_id": (slot or default).id,
            "name": name,
            "nik": resident_nik or nik(),
            "phone": phone,
        }
        response = client.post("/api/v1/bookings", json=body)
        assert response.status_code == 201, response.json
        return response.json

    return make


def _notice(code: str, kind: str) -> Notice | None:
    return db.session.scalar(
        select(Notice).join(Booking).where(Booking.code == code, Notice.kind == kind)
    )


def test_set_replace_and_remove_a_proxy(client, book):
    booking = book()
    code = booking["code"]
    assert booking["proxy"] is None

    answer = client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy(" Siti   Aminah "))
    assert answer.status_code == 200, answer.json
    assert answer.json["proxy"] == {"name": "Siti Aminah", "nik_last4": "0011"}
    assert answer.json["code"] == code and answer.json["status"] == "confirmed"
    assert PROXY_NIK not in answer.get_data(as_text=True)
    looked_up = client.get(f"/api/v1/bookings/{code}?phone={PHONE}").json
    assert looked_up["proxy"] == {"name": "Siti Aminah", "nik_last4": "0011"}
    row = db.session.scalar(select(BookingProxy))
    assert (row.nik_last4, len(row.nik_hash), row.removed_at) == ("0011", 64, None)
    assert row.day.isoformat() == looked_up["slot"]["starts_at"][:10]
    assert _notice(code, "proxy_set").status == "pending"

    replaced = client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy("Joko", OTHER_NIK))
    assert replaced.json["proxy"] == {"name": "Joko", "nik_last4": "0012"}
    assert db.session.scalar(select(func.count(BookingProxy.id))) == 1  # one per booking

    removed = client.delete(f"/api/v1/bookings/{code}/proxy", json={"phone": PHONE})
    assert removed.status_code == 200, removed.json
    assert removed.json["proxy"] is None
    assert client.get(f"/api/v1/bookings/{code}?phone={PHONE}").json["proxy"] is None
    assert _notice(code, "proxy_removed").status == "pending"
    # Removing again changes nothing (no proxy is named), with ?phone= as for look-up.
    again = client.delete(f"/api/v1/bookings/{code}/proxy?phone={PHONE}")
    assert (again.status_code, again.json["proxy"]) == (200, None)


def test_naming_the_same_proxy_again_sends_no_second_message(client, book):
    code = book()["code"]
    client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy())
    notice = _notice(code, "proxy_set")
    notice.status = "sent"
    db.session.commit()
    assert client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy()).status_code == 200
    db.session.expire_all()
    assert _notice(code, "proxy_set").status == "sent"
    client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy("Joko", OTHER_NIK))
    db.session.expire_all()
    assert _notice(code, "proxy_set").status == "pending"  # owed again: a new proxy


def test_the_phone_proves_the_booking_is_the_residents(client, book):
    code = book()["code"]
    wrong = client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy(phone="081298765432"))
    assert (wrong.status_code, wrong.json["error"]) == (404, "booking_not_found")
    unknown = client.post("/api/v1/bookings/ACDEFGHJ/proxy", json=_proxy())
    assert (unknown.status_code, unknown.json["error"]) == (404, "booking_not_found")
    client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy())
    kept = client.delete(f"/api/v1/bookings/{code}/proxy", json={"phone": "081298765432"})
    assert (kept.status_code, kept.json["error"]) == (404, "booking_not_found")
    assert db.session.scalar(select(BookingProxy.removed_at)) is None


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({"proxy_nik": "1234"}, "invalid_nik", {"proxy_nik"}),
        ({"proxy_nik": "9999991205900001"}, "invalid_nik", {"proxy_nik"}),
        ({"proxy_name": "X"}, "invalid_name", {"proxy_name"}),
        ({"proxy_name": "X", "proxy_nik": "1234"}, "invalid_name", {"proxy_name", "proxy_nik"}),
        ({"proxy_nik": ""}, "invalid_nik", {"proxy_nik"}),
        ({"proxy_name": 7}, "invalid_name", {"proxy_name"}),
    ],
)
def test_a_proxy_is_checked_like_any_resident(client, book, body, code, fields):
    booking = book()["code"]
    answer = client.post(f"/api/v1/bookings/{booking}/proxy", json={**_proxy(), **body})
    assert (answer.status_code, answer.json["error"]) == (422, code)
    assert set(answer.json["fields"]) == fields
    assert db.session.scalar(select(func.count(BookingProxy.id))) == 0
    assert _notice(booking, "proxy_set") is None


def test_the_residents_own_nik_is_no_proxy(client, book):
    mine = "3171041205900777"
    code = book(resident_nik=mine)["code"]
    answer = client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy(nik="3171-0412-0590-0777"))
    assert (answer.status_code, answer.json["error"]) == (422, "proxy_is_resident")
    assert set(answer.json["fields"]) == {"proxy_nik"}
    assert db.session.scalar(select(func.count(BookingProxy.id))) == 0


def test_only_a_confirmed_booking_takes_a_proxy(client, book, make_slot, make_user):
    cancelled = book()["code"]
    client.post(f"/api/v1/bookings/{cancelled}/cancel", json={"phone": PHONE})
    answer = client.post(f"/api/v1/bookings/{cancelled}/proxy", json=_proxy())
    assert (answer.status_code, answer.json["error"]) == (409, "proxy_not_allowed")
    assert answer.json["booking_status"] == "cancelled"

    running = make_slot(capacity=5, starts_in=-5)
    _, token = make_user("gate@antri.test", "staff", running.market_point)
    inside = book(running)["code"]
    client.post(f"/api/v1/bookings/{inside}/proxy", json=_proxy())
    scan = client.post(
        "/api/v1/checkin", json={"code": inside}, headers={"Authorization": f"Bearer {token}"}
    )
    assert scan.json["result"] == "admitted"
    for call in (client.post, client.delete):
        late = call(f"/api/v1/bookings/{inside}/proxy", json=_proxy())
        assert (late.status_code, late.json["error"]) == (409, "proxy_not_allowed")
    assert db.session.scalar(select(BookingProxy.removed_at)) is None  # kept as collected


def test_one_person_collects_for_at_most_the_limit_per_local_date(
    app, client, book, make_point, make_slot
):
    assert app.config["PROXY_LIMIT_PER_DAY"] == 2
    here = make_slot(capacity=5, starts_in=120)
    there = make_slot(capacity=5, starts_in=180, point=make_point(code="JKT-901"))
    elsewhere = make_slot(capacity=5, starts_in=240, point=make_point(code="JKT-902"))
    tomorrow = make_slot(capacity=5, starts_in=24 * 60 + 120, point=here.market_point)
    first, second, third = book(here)["code"], book(there)["code"], book(elsewhere)["code"]
    next_day = book(tomorrow)["code"]

    def name(code):
        return client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy())

    assert name(first).status_code == 200
    assert name(second).status_code == 200
    refused = name(third)
    assert (refused.status_code, refused.json["error"]) == (409, "proxy_limit_reached")
    assert refused.json["limit"] == 2
    assert name(next_day).status_code == 200  # another local date counts apart
    assert name(first).status_code == 200  # naming again on the same booking is no extra
    # A removed proxy and a cancelled booking no longer count.
    client.delete(f"/api/v1/bookings/{first}/proxy", json={"phone": PHONE})
    assert name(third).status_code == 200
    assert name(first).json["error"] == "proxy_limit_reached"
    client.post(f"/api/v1/bookings/{second}/cancel", json={"phone": PHONE})
    assert name(first).status_code == 200
    active = db.session.scalar(
        select(func.count(BookingProxy.id)).where(BookingProxy.removed_at.is_(None))
    )
    assert active == 4  # first, third, next_day, and the cancelled second's row


def test_the_limit_is_configurable(app, client, book, make_slot):
    slots = [make_slot(capacity=5, starts_in=120 + 30 * i) for i in range(3)]
    codes = [book(slot)["code"] for slot in slots]
    app.config["PROXY_LIMIT_PER_DAY"] = 1
    try:
        answers = [client.post(f"/api/v1/bookings/{c}/proxy", json=_proxy()) for c in codes]
    finally:
        app.config["PROXY_LIMIT_PER_DAY"] = 2
    errors = [answer.json.get("error") for answer in answers]
    assert errors == [None, "proxy_limit_reached", "proxy_limit_reached"]


def test_the_resident_is_messaged_in_their_language(client, make_slot, nik):
    slot = make_slot(capacity=5, starts_in=120)
    codes = {}
    for language in ("id", "en"):
        body = {"slot_id": slot.id, "name": "Budi", "nik": nik(), "phone": PHONE}
        codes[language] = client.post("/api/v1/bookings", json={**body, "language": language}).json[
            "code"
        ]
        client.post(f"/api/v1/bookings/{codes[language]}/proxy", json=_proxy())
        client.delete(f"/api/v1/bookings/{codes[language]}/proxy", json={"phone": PHONE})
    with force_locale("id"):
        set_id = render_notice(_notice(codes["id"], "proxy_set"))
        removed_id = render_notice(_notice(codes["id"], "proxy_removed"))
    set_en = render_notice(_notice(codes["en"], "proxy_set"))
    removed_en = render_notice(_notice(codes["en"], "proxy_removed"))
    for text in (set_id, removed_id, set_en, removed_en):
        assert "Siti Aminah" in text and "****0011" in text and PROXY_NIK not in text
    assert "may now collect booking" in set_en and codes["en"] in set_en
    assert "no longer collects" in removed_en
    assert "KTP" in set_id and "may now collect" not in set_id
    assert set_id != set_en and removed_id != removed_en


@pytest.fixture
def gate(client, make_slot, make_user):
    slot = make_slot(capacity=10, starts_in=-5, minutes=30)
    _, token = make_user("gate@antri.test", "staff", slot.market_point)
    headers = {"Authorization": f"Bearer {token}"}

    def scan(code, nonce=None):
        body = {"code": code, **({"nonce": nonce} if nonce else {})}
        return client.post("/api/v1/checkin", json=body, headers=headers)

    scan.slot = slot
    return scan


def test_the_gate_shows_the_proxy_and_logs_that_a_proxy_collected(client, book, gate):
    with_proxy, alone = book(gate.slot)["code"], book(gate.slot)["code"]
    client.post(f"/api/v1/bookings/{with_proxy}/proxy", json=_proxy())

    admitted = gate(with_proxy, nonce="n-1")
    assert admitted.json["result"] == "admitted"
    assert admitted.json["proxy"] == {"name": "Siti Aminah", "nik_last4": "0011"}
    assert admitted.json["booking"]["proxy"] == {"name": "Siti Aminah", "nik_last4": "0011"}
    replayed = gate(with_proxy, nonce="n-1")
    assert replayed.json["replayed"] is True
    assert replayed.json["proxy"] == admitted.json["proxy"]
    again = gate(with_proxy)
    assert (again.json["reason"], again.json["proxy"]) == ("already_checked_in", None)

    plain = gate(alone)
    assert (plain.json["result"], plain.json["proxy"]) == ("admitted", None)
    logged = dict(
        db.session.execute(
            select(Booking.code, Scan.by_proxy)
            .join(Booking)
            .where(Scan.result == "admitted", Scan.direction == "in")
        ).all()
    )
    assert logged == {with_proxy: True, alone: False}


def test_the_gate_page_shows_the_proxy_to_check(client, book, gate, make_user):
    code = book(gate.slot)["code"]
    client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy())
    point = gate.slot.market_point
    make_user("page@antri.test", "staff", point)
    client.post("/login", data={"email": "page@antri.test", "password": "correct-horse-1"})
    page = client.post(f"/gate?market_point={point.code}", data={"scan": code, "direction": "in"})
    html = page.get_data(as_text=True)
    assert 'data-result="admitted"' in html
    assert 'class="proxy" data-proxy-nik="0011"' in html
    assert "Siti Aminah" in html and "NIK ****0011" in html and "periksa KTP" in html


def test_the_offline_snapshot_carries_the_proxy(client, book, gate):
    code = book(gate.slot)["code"]
    other = book(gate.slot)["code"]
    client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy())
    snapshot = gate_snapshot(gate.slot.market_point)
    proxies = {b["code"]: b["proxy"] for b in snapshot["bookings"]}
    assert proxies == {code: {"name": "Siti Aminah", "nik_last4": "0011"}, other: None}
    client.delete(f"/api/v1/bookings/{code}/proxy", json={"phone": PHONE})
    assert all(b["proxy"] is None for b in gate_snapshot(gate.slot.market_point)["bookings"])


def test_a_move_to_another_day_carries_the_proxys_date(client, book, make_slot, make_user):
    from common.audit import CLI
    from slots.staff import move_booking

    today = make_slot(capacity=5, starts_in=120)
    later = make_slot(capacity=5, starts_in=24 * 60 + 120, point=today.market_point)
    code = book(today)["code"]
    client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy())
    before = db.session.scalar(select(BookingProxy.day))
    move_booking(code, later.id, CLI)
    db.session.commit()
    assert db.session.scalar(select(BookingProxy.day)) == before + timedelta(days=1)


def test_the_proxy_is_purged_with_the_booking(app, client, make_slot, nik):
    from jobs import run_timed_work
    from tests.clock import tomorrow_at

    slot = make_slot(capacity=2, starts_in=0, minutes=30, now=tomorrow_at(9))
    body = {"slot_id": slot.id, "name": "Ani", "nik": nik(), "phone": PHONE}
    code = client.post("/api/v1/bookings", json=body).json["code"]
    later = make_slot(capacity=2, starts_in=0, now=tomorrow_at(9) + timedelta(days=40))
    later.published_at = utcnow() - timedelta(days=1)
    db.session.commit()
    kept = client.post("/api/v1/bookings", json={**body, "slot_id": later.id, "nik": nik()})
    for booking in (code, kept.json["code"]):
        client.post(f"/api/v1/bookings/{booking}/proxy", json=_proxy())
    ends = slot.ends_at
    days = app.config["RETENTION_DAYS"]
    assert run_timed_work((ends + timedelta(days=days)).isoformat())["bookings_purged"] == 1
    left = db.session.scalars(select(BookingProxy)).all()
    assert [p.booking.code for p in left] == [kept.json["code"]]


def _ticket_url(code: str) -> str:
    from slots.codes import booking_access_key

    return f"/tickets/{code}/{booking_access_key(code)}"


def test_the_ticket_page_names_and_removes_a_proxy(client, book):
    code = book()["code"]
    url = _ticket_url(code)
    page = client.get(url).get_data(as_text=True)
    assert "Diambil oleh orang lain" in page and 'id="proxy-form"' in page
    assert 'id="proxy-now"' not in page

    form = {"proxy_name": "Siti Aminah", "proxy_nik": PROXY_NIK, "phone": "0812-3456-7890"}
    named = client.post(f"{url}/proxy", data=form)
    assert named.status_code == 303 and named.location.endswith(f"{url}#proxy")
    page = client.get(url).get_data(as_text=True)
    assert 'id="proxy-now" data-proxy-nik="0011"' in page and "Siti Aminah" in page
    assert PROXY_NIK not in page
    assert "Ganti dengan orang ini" in page  # naming again replaces
    assert _notice(code, "proxy_set") is not None

    wrong = client.post(f"{url}/proxy/remove", data={"remove-phone": "081298765432"})
    assert wrong.status_code == 404
    assert 'data-error="booking_not_found"' in wrong.get_data(as_text=True)
    removed = client.post(f"{url}/proxy/remove", data={"remove-phone": PHONE})
    assert removed.status_code == 303
    page = client.get(url).get_data(as_text=True)
    assert 'id="proxy-now"' not in page
    assert client.get(f"/api/v1/bookings/{code}?phone={PHONE}").json["proxy"] is None


def test_the_ticket_page_shows_faults_beside_the_fields(client, book):
    code = book(resident_nik="3171041205900777")["code"]
    url = _ticket_url(code)
    form = {"proxy_name": "Siti Aminah", "proxy_nik": "1234", "phone": "081298765432"}
    answer = client.post(f"{url}/proxy", data=form)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert 'id="proxy_nik-error" data-error="invalid_nik"' in page
    assert 'id="phone-error" data-error="booking_not_found"' in page
    assert 'value="Siti Aminah"' in page  # what was right is kept
    assert 'value="1234"' not in page  # the wrong NIK goes back empty
    own = client.post(
        f"{url}/proxy", data={**form, "proxy_nik": "3171041205900777", "phone": PHONE}
    )
    page = own.get_data(as_text=True)
    assert own.status_code == 422 and 'data-error="proxy_is_resident"' in page
    assert "3171041205900777" not in page  # a wrong NIK is not echoed
    assert db.session.scalar(select(func.count(BookingProxy.id))) == 0


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("id", "Tulis namanya sesuai KTP-nya (2 sampai 120 karakter)."),
        ("en", "Enter their name as on their KTP (2 to 120 characters)."),
    ],
)
def test_a_wrong_proxy_name_is_told_as_theirs_not_yours(client, book, lang, words):
    """The resident rule's words ("Enter your name") told the resident their own name
    was wrong when the proxy's was."""
    code = book()["code"]
    url = _ticket_url(code)
    assert client.get(f"{url}?lang={lang}").status_code == 200
    form = {"proxy_name": "X", "proxy_nik": PROXY_NIK, "phone": PHONE}
    page = client.post(f"{url}/proxy", data=form).get_data(as_text=True)
    assert f'id="proxy_name-error" data-error="invalid_name">{words}<' in page
    answer = client.post(f"/api/v1/bookings/{code}/proxy?lang={lang}", json=_proxy(name="X"))
    assert (answer.status_code, answer.json["fields"]["proxy_name"]) == (422, words)


def test_a_cancelled_tickets_page_shows_no_proxy_to_collect(client, book):
    """The page of a cancelled booking said its proxy "collects for you, showing their
    KTP at the gate"."""
    code = book()["code"]
    assert client.post(f"/api/v1/bookings/{code}/proxy", json=_proxy()).status_code == 200
    assert 'id="proxy-now"' in client.get(_ticket_url(code)).get_data(as_text=True)
    cancelled = client.post(f"/api/v1/bookings/{code}/cancel", json={"phone": PHONE})
    assert cancelled.status_code == 200
    page = client.get(_ticket_url(code)).get_data(as_text=True)
    assert 'id="proxy-now"' not in page and "Siti Aminah" not in page
    assert 'id="proxy-form"' not in page


def test_the_ticket_page_says_when_the_limit_is_reached(client, book, make_slot):
    first, second, third = (
        book(make_slot(capacity=2, starts_in=60 * i))["code"] for i in (2, 3, 4)
    )
    form = {"proxy_name": "Siti Aminah", "proxy_nik": PROXY_NIK, "phone": PHONE}
    for code in (first, second):
        assert client.post(f"{_ticket_url(code)}/proxy", data=form).status_code == 303
    refused = client.post(f"{_ticket_url(third)}/proxy", data=form)
    page = refused.get_data(as_text=True)
    assert refused.status_code == 409 and 'data-error="proxy_limit_reached"' in page
    assert 'value="Siti Aminah"' in page and f'value="{PROXY_NIK}"' in page  # kept to fix


def test_the_assisted_booking_desk_names_a_proxy(client, make_slot, make_user, nik):
    slot = make_slot(capacity=3, starts_in=60)
    make_user("staff@antri.test", "staff", slot.market_point)
    client.post("/login", data={"email": "staff@antri.test", "password": "correct-horse-1"})
    assert 'id="proxy-fields"' in client.get("/admin/assist").get_data(as_text=True)
    base = {"slot": str(slot.id), "name": "Mbah Sastro", "nik": nik(), "phone": ""}
    bad = client.post(
        "/admin/assist",
        data={**base, "proxy_name": "Siti", "proxy_nik": "12", "request_id": "p1"},
    )
    assert bad.status_code == 422 and "Pengambil:" in bad.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Booking.id))) == 0  # nothing half-written
    made = client.post(
        "/admin/assist",
        data={**base, "proxy_name": "Siti Aminah", "proxy_nik": PROXY_NIK, "request_id": "p2"},
    )
    assert made.status_code == 302
    proxy = db.session.scalar(select(BookingProxy))
    assert (proxy.name, proxy.nik_last4, proxy.booking.name) == (
        "Siti Aminah",
        "0011",
        "Mbah Sastro",
    )
    plain = client.post("/admin/assist", data={**base, "nik": nik(), "request_id": "p3"})
    assert plain.status_code == 302
    assert db.session.scalar(select(func.count(BookingProxy.id))) == 1


def test_a_refused_proxy_form_says_why_once_the_booking_moved_on(client, book, gate):
    """A ticket page left open while the booking was checked in (or cancelled): the
    form's 409 ``proxy_not_allowed`` came back as a page without its message, which
    sat in the proxy section that a booking no longer confirmed does not show."""
    code = book(gate.slot)["code"]
    assert gate(code).json["result"] == "admitted"
    form = {"proxy_name": "Siti Aminah", "proxy_nik": PROXY_NIK, "phone": PHONE}
    named = client.post(f"{_ticket_url(code)}/proxy", data=form)
    assert named.status_code == 409
    assert 'data-error="proxy_not_allowed"' in named.get_data(as_text=True)
    removed = client.post(f"{_ticket_url(code)}/proxy/remove", data={"remove-phone": PHONE})
    assert removed.status_code == 409
    assert 'data-error="proxy_not_allowed"' in removed.get_data(as_text=True)
    page = client.get(_ticket_url(code)).get_data(as_text=True)
    assert 'id="proxy"' not in page  # nothing to name, nothing refused: no section

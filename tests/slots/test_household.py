"""Per-household (KK) limit at market points that ask for it: one family card holds at
most BOOKING_LIMIT_PER_KK active bookings in the window, whoever in the family books."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from extensions import db
from slots.booking import book_slot
from slots.models import Booking, Household, WaitingListEntry

# Kec. Senen (317104) with a valid serial: a family card number.
KK = "3171041234560001"
OTHER_KK = "3171041234560002"


def _household_point(make_point, code="JKT-950"):
    point = make_point(code)
    point.household_limit = True
    db.session.commit()
    return point


def book(client, slot_id, nik, kk=None, phone="081234567890"):
    body = {"slot_id": slot_id, "name": "Siti", "nik": nik, "phone": phone}
    if kk is not None:
        body["kk"] = kk
    return client.post("/api/v1/bookings", json=body)


def test_one_booking_per_family_card_where_the_point_asks(client, make_point, make_slot, nik):
    point = _household_point(make_point)
    first, second = (make_slot(capacity=5, starts_in=m, point=point) for m in (180, 300))
    missing = book(client, first.id, nik())
    assert (missing.status_code, missing.json["error"]) == (422, "invalid_kk")
    for bad, fault in (
        ("12345", "length"),
        ("9999991234560001", "region"),
        (KK[:12] + "0000", "serial"),
    ):
        answer = book(client, first.id, nik(), bad)
        assert (answer.status_code, answer.json["fault"]) == (422, fault)
    assert book(client, first.id, nik(), KK).status_code == 201
    sibling = book(client, second.id, nik(), "3171 0412 3456 0001")  # same card, typed spaced
    assert (sibling.status_code, sibling.json["error"]) == (409, "household_limit_reached")
    assert sibling.json["limit"] == 1
    assert book(client, second.id, nik(), OTHER_KK).status_code == 201
    hashes = db.session.scalars(select(Booking.kk_hash)).all()
    assert len(set(hashes)) == 2 and KK not in hashes  # kept as a keyed hash only


def test_points_without_the_limit_ignore_the_card(client, make_slot, nik):
    slot = make_slot(capacity=5, starts_in=180)
    assert book(client, slot.id, nik(), KK).status_code == 201
    assert book(client, slot.id, nik(), KK).status_code == 201
    assert db.session.scalars(select(Booking.kk_hash)).all() == [None, None]


def test_racing_family_members_get_one_booking(app, ctx, make_point, make_slot, nik):
    point = _household_point(make_point)
    slots = [make_slot(capacity=5, starts_in=120 + 60 * n, point=point).id for n in range(6)]
    people = [nik() for _ in slots]

    def attempt(args):
        slot_id, person = args
        with app.app_context():
            try:
                book_slot(slot_id, "Siti", person, "081234567890", kk=KK)
                db.session.commit()
                return "booked"
            except Exception as exc:  # noqa: BLE001
                db.session.rollback()
                return getattr(exc, "code", type(exc).__name__)
            finally:
                db.session.remove()

    for _ in range(3):
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(attempt, zip(slots, people, strict=True)))
        assert sorted(results) == ["booked"] + ["household_limit_reached"] * 5
        db.session.expire_all()
        assert (
            db.session.scalar(select(func.count(Booking.id)).where(Booking.status == "confirmed"))
            == 1
        )
        db.session.execute(Booking.__table__.update().values(status="cancelled"))
        db.session.commit()
    assert db.session.scalar(select(func.count(Household.id))) == 1


def test_promotion_skips_a_household_that_booked_meanwhile(client, make_point, make_slot, nik):
    point = _household_point(make_point)
    full = make_slot(capacity=1, starts_in=180, point=point)
    other = make_slot(capacity=3, starts_in=300, point=point)
    holder = book(client, full.id, nik(), OTHER_KK).json["code"]
    join = client.post(
        f"/api/v1/slots/{full.id}/waiting-list",
        json={"name": "Rudi", "nik": nik(), "phone": "081211110006", "kk": KK},
    )
    assert join.status_code == 201
    assert book(client, other.id, nik(), KK).status_code == 201  # a family member books
    cancel = client.post(f"/api/v1/bookings/{holder}/cancel", json={"phone": "081234567890"})
    assert cancel.status_code == 200
    assert db.session.scalar(select(WaitingListEntry.status)) == "skipped"


def test_booking_form_asks_for_the_card_only_where_needed(client, make_point, make_slot):
    plain = make_slot(capacity=2, starts_in=180)
    limited = make_slot(capacity=2, starts_in=180, point=_household_point(make_point))
    assert 'name="kk"' not in client.get(f"/slots/{plain.id}/book").text
    assert 'name="kk"' in client.get(f"/slots/{limited.id}/book").text

"""One error shape, and the same fault answered the same way by every endpoint that
takes the field; the OpenAPI document covers every /api/v1 route."""

from __future__ import annotations

import pytest

from extensions import db
from slots.models import Booking


@pytest.fixture
def auth(make_point, make_user):
    """Bearer headers of an admin (every role's endpoint accepts one) at a point."""
    make_point()
    _, token = make_user("root@antri.test", "admin")
    return {"Authorization": f"Bearer {token}"}


# (method, url) of every endpoint whose JSON body carries the field.
RESIDENT = [("POST", "/api/v1/bookings"), ("POST", "/api/v1/slots/{slot}/waiting-list")]
GATE = [("POST", "/api/v1/checkin"), ("POST", "/api/v1/checkout")]
BODY_ENDPOINTS = [
    *RESIDENT,
    *GATE,
    ("POST", "/api/v1/checkin/sync"),
    ("POST", "/api/v1/bookings/{code}/cancel"),
    ("POST", "/api/v1/waiting-list/{code}/leave"),
    ("PATCH", "/api/v1/slots/{slot}"),
    ("POST", "/api/v1/bookings/{code}/move"),
]
GOOD = {
    "slot_id": 1,
    "name": "Budi",
    "nik": "3171041205900001",
    "phone": "081234567890",
    "ticket": "ABCD-EFGH",
    "market_point": "JKT-900",
    "scans": [],
}

FAULTS = [
    # field, bad value, endpoints taking it, code
    ("slot_id", "7", [RESIDENT[0], ("POST", "/api/v1/bookings/{code}/move")], "invalid_slot_id"),
    ("slot_id", True, [RESIDENT[0], ("POST", "/api/v1/bookings/{code}/move")], "invalid_slot_id"),
    ("name", "  ", RESIDENT, "invalid_name"),
    ("nik", 3171041205900001, RESIDENT, "invalid_nik"),
    ("phone", None, RESIDENT, "invalid_phone"),
    (
        "phone",
        ["0812"],
        [("POST", "/api/v1/bookings/{code}/cancel"), ("POST", "/api/v1/waiting-list/{code}/leave")],
        "invalid_phone",
    ),
    ("language", 1, RESIDENT, "invalid_language"),
    ("kk", 1, RESIDENT, "invalid_kk"),
    ("nonce", "a b", GATE, "invalid_nonce"),
    (
        "device",
        5,
        [*GATE, ("POST", "/api/v1/checkin/sync"), ("POST", "/api/v1/checkins/{code}/undo")],
        "invalid_device",
    ),
    ("market_point", 5, [*GATE, ("POST", "/api/v1/checkin/sync")], "invalid_market_point"),
]


def _url(template: str, slot_id: int) -> str:
    return template.format(slot=slot_id, code="NOPE1234")


@pytest.mark.parametrize(("field", "value", "endpoints", "code"), FAULTS)
def test_a_fault_is_one_status_and_code_everywhere(
    client, auth, make_slot, field, value, endpoints, code
):
    slot = make_slot(capacity=2, starts_in=120)
    for method, url in endpoints:
        body = {**GOOD, "slot_id": slot.id, field: value}
        answer = client.open(_url(url, slot.id), method=method, json=body, headers=auth)
        assert (answer.status_code, answer.json["error"]) == (422, code), (url, answer.json)
        assert field in answer.json["fields"], (url, answer.json)
    assert db.session.query(Booking).count() == 0


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '"text"', "{"])
def test_a_body_that_is_no_json_object_is_422_invalid_json_everywhere(
    client, auth, make_slot, body
):
    slot = make_slot(capacity=2, starts_in=120)
    for method, url in BODY_ENDPOINTS:
        answer = client.open(
            _url(url, slot.id), method=method, data=body, headers=auth,
            content_type="application/json",
        )  # fmt: skip
        assert (answer.status_code, answer.json["error"]) == (422, "invalid_json"), url
        assert answer.json["fields"] == {}


@pytest.mark.parametrize("day", ["2025-02-30", "01-03-2025", "9999-01-01", "2025-3-1"])
def test_a_bad_date_is_422_invalid_date_everywhere(client, auth, make_point, day):
    for url in ("/api/v1/market-points/JKT-900/slots", "/api/v1/exports/bookings.csv"):
        answer = client.get(f"{url}?date={day}", headers=auth)
        assert (answer.status_code, answer.json["error"]) == (422, "invalid_date"), url
        assert "date" in answer.json["fields"]


def test_every_error_body_has_the_one_shape(client, auth):
    answers = [
        client.get("/api/v1/bookings/NOPE1234?phone=1"),  # a domain error, 404
        client.get("/api/v1/occupancy"),  # no token, 401
        client.get("/api/v1/no-such-thing"),  # an HTTP error, 404
        client.post("/api/v1/checkin/sync", json={"scans": "x"}, headers=auth),  # 422
    ]
    for answer in answers:
        assert set(answer.json) >= {"error", "message", "fields"}, answer.json
        assert isinstance(answer.json["fields"], dict)


def test_the_document_covers_every_api_route(client, app):
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    described = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint in ("api.openapi", "api.docs"):
            continue
        path = rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in described
            operation = document["paths"][path][method.lower()]
            errors = {s for s in operation["responses"] if s.startswith(("4", "5"))}
            assert errors, (path, method)
            for status in errors:
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ApiError"}


def test_the_docs_page_renders_the_document_without_a_cdn(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "/static/vendor/swagger-ui-bundle.js" in page.text
    assert "/api/v1/openapi.json" in page.text
    assert "https://" not in page.text and "http://" not in page.text.replace(
        "http://antri.test", ""
    )

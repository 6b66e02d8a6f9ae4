"""Tester's findings (issue 13, break-it pass) on the described API: the document, the
one error shape, and answers clients had before the schemas (995465b)."""

from __future__ import annotations

import jsonschema
import pytest


def _components(document: dict) -> dict:
    return document["components"]["schemas"]


def _properties(schema: dict):
    """(name, schema) of every property of ``schema``, nested ones included."""
    for name, prop in schema.get("properties", {}).items():
        yield name, prop
        yield from _properties(prop)
    for key in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(key, []):
            yield from _properties(part)
    if isinstance(schema.get("items"), dict):
        yield from _properties(schema["items"])


def test_every_declared_default_is_valid_for_its_own_schema(client):
    # openapi-spec-validator (OpenAPIV31SpecValidator) refuses the document for this:
    # "None is not of type 'string'", five times. A generated client takes the type
    # (a non-null string) and the default (null) to contradict each other.
    document = client.get("/api/v1/openapi.json").json
    wrong = []
    for model, schema in _components(document).items():
        for name, prop in _properties(schema):
            if "default" not in prop or "$ref" in prop:
                continue
            checked = {key: value for key, value in prop.items() if key != "default"}
            if not jsonschema.Draft202012Validator(checked).is_valid(prop["default"]):
                wrong.append(f"{model}.{name}: default {prop['default']!r} vs {checked}")
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("/api/v1/exports/bookings.csv", "text/csv"),
        ("/api/v1/occupancy/stream", "text/event-stream"),
    ],
)
def test_non_json_answers_declare_their_media_type(client, path, media):
    # Issue 13: "The bodies of every /api/v1 request and response are declared". These
    # two 200 answers say only {"description": "OK"}: a generated client cannot know
    # that one is CSV and the other a text/event-stream.
    document = client.get("/api/v1/openapi.json").json
    ok = document["paths"][path]["get"]["responses"]["200"]
    assert media in ok.get("content", {}), ok


@pytest.fixture
def slot(make_slot):
    return make_slot(capacity=3, starts_in=120)


@pytest.mark.parametrize("field", ["name", "nik", "phone"])
@pytest.mark.parametrize("bad", ["Siti\x00Aminah", "Siti\ud800"], ids=["nul", "surrogate"])
def test_a_forbidden_character_names_its_field_like_every_other_body_fault(
    client, slot, field, bad
):
    # README: "`fields` names each faulty input field". A wrong type in `name` gives
    # fields {"name": ...}; a NUL byte or a lone surrogate in it gives fields {}.
    body = {"slot_id": slot.id, "name": "Siti", "nik": "3171041205900001", "phone": "0812345678"}
    body[field] = bad
    answer = client.post("/api/v1/bookings", json=body)
    assert (answer.status_code, answer.json["error"]) == (422, "invalid_characters")
    assert field in answer.json["fields"], answer.json


@pytest.fixture
def token(make_point, make_user):
    make_point()
    _, token = make_user("root@antri.test", "admin")
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/market-points?q=Pasar&q=Uji",
        "/api/v1/market-points/JKT-900/slots?date={day}&date={day}",
        "/api/v1/exports/bookings.csv?date={day}&date={day}",
        "/api/v1/occupancy/overview?market_point=JKT-900&market_point=JKT-900",
        "/api/v1/gate/sync?market_point=JKT-900&market_point=JKT-900",
    ],
)
def test_a_repeated_query_parameter_is_read_as_before(client, token, url):
    # Before the schemas (995465b) every view read request.args.get(name): the first
    # value, 200. spectree's get_multidict_items turns a repeated key into a list, which
    # the str fields refuse: 422 (invalid_date with "Input should be a valid string",
    # invalid_input for q and market_point, although the body's market_point fault is
    # invalid_market_point).
    from datetime import date, timedelta

    day = (date.today() + timedelta(days=1)).isoformat()
    answer = client.get(url.format(day=day), headers=token)
    assert answer.status_code == 200, answer.get_json(silent=True)


def test_a_repeated_phone_in_a_lookup_is_read_as_before(client, slot, nik):
    booked = client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Siti", "nik": nik(), "phone": "081234567890"},
    )
    assert booked.status_code == 201, booked.json
    code = booked.json["code"]
    answer = client.get(f"/api/v1/bookings/{code}?phone=081234567890&phone=0")
    assert answer.status_code == 200, answer.json  # 995465b: 200; now 422 invalid_input


def test_an_empty_date_still_lists_todays_slots(client, make_slot):
    # 995465b: `?date=` (an empty value, as an HTML form or a URL builder sends it) was
    # today's slots, 200, like no date at all; now 422 invalid_date. README: "?date=
    # YYYY-MM-DD ... for that local date", default today.
    slot = make_slot(capacity=3, starts_in=30)
    plain = client.get(f"/api/v1/market-points/{slot.market_point.code}/slots")
    empty = client.get(f"/api/v1/market-points/{slot.market_point.code}/slots?date=")
    assert plain.status_code == 200
    assert (empty.status_code, empty.get_json()) == (200, plain.get_json())

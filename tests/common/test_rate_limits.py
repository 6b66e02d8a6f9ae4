"""Rate limits: per IP and per NIK on booking, per code on look-up; 429 + Retry-After."""

from __future__ import annotations

import pytest

from app import create_app
from extensions import limiter


@pytest.fixture(autouse=True)
def _one_limiter_many_apps(app):
    """Flask-Limiter keeps its state on the one Limiter object, and the last app
    bound wins: start each test with a live store and give the limiter back to
    the suite's app (limits off) afterwards."""
    limiter._storage_dead = False  # a dead store seen by an earlier test
    yield
    limiter._storage_dead = False
    limiter.init_app(app)


def _limited_app(app, tmp_path, **settings):
    """A second app on the suite's database with small limits turned on."""
    config = {
        "INSTANCE_PATH": str(tmp_path),
        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "SECRET_KEY": "test-secret",
        "NIK_HASH_KEY": "test-nik-key",
        "TICKET_KEY_DIR": app.config["TICKET_KEY_DIR"],
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": "memory://",
        "RATE_LIMIT_BOOKING_IP": "4/minute",
        "RATE_LIMIT_BOOKING_NIK": "2/minute",
        "RATE_LIMIT_LOOKUP_IP": "50/minute",
        "RATE_LIMIT_LOOKUP_CODE": "3/minute",
        "SERVER_NAME": "antri.test",
    }
    return create_app({**config, **settings})


@pytest.fixture
def limited(app, ctx, tmp_path, request):
    """A second app on the same database with small limits turned on."""
    storage = getattr(request, "param", "memory://")
    limited_app = _limited_app(app, tmp_path, RATELIMIT_STORAGE_URI=storage)
    yield limited_app
    from extensions import db

    with limited_app.app_context():
        db.engine.dispose()


@pytest.fixture
def readme_limits(app, ctx, tmp_path):
    """A limited app with the README's look-up budget: 10 per code per minute."""
    limited_app = _limited_app(app, tmp_path, RATE_LIMIT_LOOKUP_CODE="10/minute")
    yield limited_app
    from extensions import db

    with limited_app.app_context():
        db.engine.dispose()


def _book(client, slot_id, nik, ip):
    return client.post(
        "/api/v1/bookings",
        json={"slot_id": slot_id, "name": "Budi", "nik": nik, "phone": "081234567890"},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_per_nik_limit_holds_across_ips(limited, make_slot, nik):
    slot_id = make_slot(capacity=10, starts_in=120).id
    person = nik()
    client = limited.test_client()
    answers = [_book(client, slot_id, person, f"10.0.0.{i}").status_code for i in range(3)]
    assert answers == [201, 409, 429]  # booked, over the booking limit, then throttled
    throttled = _book(client, slot_id, person, "10.0.0.9")
    assert throttled.status_code == 429
    assert throttled.json["error"] == "rate_limited"
    assert int(throttled.headers["Retry-After"]) > 0


def test_per_ip_limit(limited, make_slot, nik):
    slot_id = make_slot(capacity=10, starts_in=120).id
    client = limited.test_client()
    answers = [_book(client, slot_id, nik(), "10.0.1.1").status_code for _ in range(5)]
    assert answers == [201, 201, 201, 201, 429]
    assert _book(client, slot_id, nik(), "10.0.1.2").status_code == 201  # another IP


def test_lookup_is_limited_per_code(limited, make_slot, nik):
    slot_id = make_slot(capacity=10, starts_in=120).id
    client = limited.test_client()
    code = _book(client, slot_id, nik(), "10.0.2.1").json["code"]
    guesses = [
        client.get(f"/api/v1/bookings/{code}?phone=0812000000{i:02d}").status_code for i in range(4)
    ]
    assert guesses == [404, 404, 404, 429]


@pytest.mark.parametrize("limited", ["redis://127.0.0.1:1/0"], indirect=True)
def test_dead_redis_storage_never_refuses_a_booking(limited, make_slot, nik):
    """RATELIMIT_SWALLOW_ERRORS: an unreachable limit store lets requests through."""
    slot_id = make_slot(capacity=10, starts_in=120).id
    response = _book(limited.test_client(), slot_id, nik(), "10.0.3.1")
    assert response.status_code == 201


def test_redis_storage_counts_across_app_instances(app, ctx, tmp_path, make_slot, nik, redis_url):
    """Two app processes share one Redis, so a client cannot dodge limits by worker."""
    apps = []
    for name in ("a", "b"):
        apps.append(
            create_app(
                {
                    "INSTANCE_PATH": str(tmp_path / name),
                    "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                    "SECRET_KEY": "test-secret",
                    "NIK_HASH_KEY": "test-nik-key",
                    "TICKET_KEY_DIR": app.config["TICKET_KEY_DIR"],
                    "RATELIMIT_ENABLED": True,
                    "RATELIMIT_STORAGE_URI": redis_url,
                    "RATE_LIMIT_BOOKING_IP": "2/minute",
                    "SERVER_NAME": "antri.test",
                }
            )
        )
    slot_id = make_slot(capacity=10, starts_in=120).id
    first, second = (a.test_client() for a in apps)
    answers = [
        _book(first, slot_id, nik(), "10.0.4.1").status_code,
        _book(second, slot_id, nik(), "10.0.4.1").status_code,
        _book(first, slot_id, nik(), "10.0.4.1").status_code,
    ]
    assert answers == [201, 201, 429]
    from extensions import db

    for each in apps:
        with each.app_context():
            db.engine.dispose()


PHONE = "081234567890"


def _wrong(i: int) -> str:
    return f"0813000000{i:02d}"


def test_one_lookup_budget_per_code_across_every_path(readme_limits, make_slot, nik):
    """Issue 14 item 2: the API look-up, the API cancel and the Tiket saya form share one
    budget of 10 per code per minute; every request counts, the right phone too (as the
    per-endpoint budget did), so the 11th on any path is 429."""
    slot_id = make_slot(capacity=10, starts_in=24 * 60).id
    client = readme_limits.test_client()
    code = _book(client, slot_id, nik(), "10.0.5.1").json["code"]
    paths = [
        lambda phone: client.get(f"/api/v1/bookings/{code}?phone={phone}"),
        lambda phone: client.post(f"/api/v1/bookings/{code}/cancel", json={"phone": phone}),
        lambda phone: client.post("/tickets/lookup", data={"code": code, "phone": phone}),
    ]
    answers = [paths[i % 3](_wrong(i)).status_code for i in range(10)]
    assert answers == [404, 404, 404] * 3 + [404]
    assert [path(_wrong(99)).status_code for path in paths] == [429, 429, 429]
    right = [path(PHONE) for path in paths]
    assert [r.status_code for r in right] == [429, 429, 429]
    assert right[0].json["error"] == "rate_limited"
    assert int(right[0].headers["Retry-After"]) > 0
    other = _book(client, slot_id, nik(), "10.0.5.2").json["code"]  # another code: its own
    assert client.get(f"/api/v1/bookings/{other}?phone={PHONE}").status_code == 200


def test_code_budget_folds_case_and_dashes(readme_limits, make_slot, nik):
    slot_id = make_slot(capacity=10, starts_in=24 * 60).id
    client = readme_limits.test_client()
    code = _book(client, slot_id, nik(), "10.0.6.1").json["code"]
    spellings = [code, code.lower(), f"{code[:4]}-{code[4:]}", f" {code.lower()} "]
    answers = [
        client.post("/tickets/lookup", data={"code": spellings[i % 4], "phone": _wrong(i)})
        for i in range(10)
    ]
    assert [a.status_code for a in answers] == [404] * 10
    assert client.get(f"/api/v1/bookings/{code}?phone={PHONE}").status_code == 429


def test_waiting_list_paths_share_the_code_budget(readme_limits, make_slot, nik):
    slot_id = make_slot(capacity=1, starts_in=24 * 60).id
    client = readme_limits.test_client()
    assert _book(client, slot_id, nik(), "10.0.7.1").status_code == 201
    joined = client.post(
        f"/api/v1/slots/{slot_id}/waiting-list",
        json={"name": "Budi", "nik": nik(), "phone": PHONE},
        environ_base={"REMOTE_ADDR": "10.0.7.2"},
    )
    code = joined.json["code"]
    paths = [
        lambda phone: client.get(f"/api/v1/waiting-list/{code}?phone={phone}"),
        lambda phone: client.post(f"/api/v1/waiting-list/{code}/leave", json={"phone": phone}),
        lambda phone: client.post("/tickets/lookup", data={"code": code, "phone": phone}),
    ]
    assert [paths[i % 3](_wrong(i)).status_code for i in range(10)] == [404] * 10
    assert [path(PHONE).status_code for path in paths] == [429, 429, 429]

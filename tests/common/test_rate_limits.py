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


@pytest.fixture
def limited(app, ctx, tmp_path, request):
    """A second app on the same database with small limits turned on."""
    storage = getattr(request, "param", "memory://")
    limited_app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": "test-secret",
            "NIK_HASH_KEY": "test-nik-key",
            "TICKET_KEY_DIR": app.config["TICKET_KEY_DIR"],
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": storage,
            "RATE_LIMIT_BOOKING_IP": "4/minute",
            "RATE_LIMIT_BOOKING_NIK": "2/minute",
            "RATE_LIMIT_LOOKUP_IP": "50/minute",
            "RATE_LIMIT_LOOKUP_CODE": "3/minute",
            "SERVER_NAME": "antri.test",
        }
    )
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

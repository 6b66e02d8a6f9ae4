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


# Sign-in back-off (issue 14 item 1) -------------------------------------------------


@pytest.fixture
def sign_in_limits(app, ctx, tmp_path, request):
    """A limited app with small sign-in budgets: 3 failures a minute per account and
    address, 6 per address; ``request.param`` may override settings."""
    settings = {"LOGIN_LIMIT_PER_ACCOUNT": "3/minute", "LOGIN_LIMIT_PER_ADDRESS": "6/minute"}
    settings.update(getattr(request, "param", {}))
    limited_app = _limited_app(app, tmp_path, **settings)
    yield limited_app
    from extensions import db

    with limited_app.app_context():
        db.engine.dispose()


def _sign_in(app_under_test, email, password, ip, lang=None):
    client = app_under_test.test_client()  # a fresh browser: no session carried over
    url = "/login" + (f"?lang={lang}" if lang else "")
    return client.post(
        url, data={"email": email, "password": password}, environ_base={"REMOTE_ADDR": ip}
    )


def _refusals():
    from common.audit import search

    return search(action="account.sign_in_limited")


def test_a_stranger_s_failures_do_not_keep_staff_out(sign_in_limits, make_point, make_user):
    staff, _ = make_user("gate@antri.test", "staff", make_point())
    stranger, usual = "10.0.8.9", "10.0.8.1"
    answers = [_sign_in(sign_in_limits, "gate@antri.test", "guess", stranger) for _ in range(4)]
    assert [a.status_code for a in answers] == [400, 400, 400, 429]
    refused = answers[-1]
    assert int(refused.headers["Retry-After"]) > 0
    assert "Terlalu banyak percobaan masuk yang gagal" in refused.text
    assert 'name="email"' in refused.text  # the sign-in page, not a bare error
    # The back-off is per account and address: the right password waits there too ...
    assert (
        _sign_in(sign_in_limits, "GATE@antri.test ", "correct-horse-1", stranger).status_code == 429
    )
    # ... but not from the staff member's own address.
    mine = _sign_in(sign_in_limits, "gate@antri.test", "correct-horse-1", usual)
    assert mine.status_code == 302 and mine.headers["Location"].endswith("/gate")
    entries = _refusals()
    assert len(entries) == 2
    assert {(e.target_id, e.remote_addr, e.actor) for e in entries} == {
        (str(staff.id), stranger, "anonymous")
    }
    assert entries[0].market_point_id == staff.market_point_id
    assert '"email": "gate@antri.test"' in entries[0].after


def test_successful_sign_ins_use_no_budget(sign_in_limits, make_user):
    make_user("super@antri.test", "supervisor")
    ip = "10.0.8.2"
    assert [
        _sign_in(sign_in_limits, "super@antri.test", "correct-horse-1", ip).status_code
        for _ in range(5)
    ] == [302] * 5
    wrong = [_sign_in(sign_in_limits, "super@antri.test", "nope", ip).status_code for _ in range(4)]
    assert wrong == [400, 400, 400, 429]


def test_one_address_has_a_larger_budget_over_every_account(sign_in_limits, make_user):
    make_user("super@antri.test", "supervisor")
    ip = "10.0.8.3"
    answers = [_sign_in(sign_in_limits, f"u{i}@antri.test", "x", ip).status_code for i in range(7)]
    assert answers == [400] * 6 + [429]
    # Unknown accounts are audited too, with what was typed.
    assert [e.target_id for e in _refusals()] == [""]
    assert (
        _sign_in(sign_in_limits, "super@antri.test", "correct-horse-1", "10.0.8.4").status_code
        == 302
    )


def test_a_form_fault_is_not_a_failed_sign_in(sign_in_limits, make_user):
    make_user("super@antri.test", "supervisor")
    ip = "10.0.8.5"
    empty = [_sign_in(sign_in_limits, "super@antri.test", "", ip).status_code for _ in range(5)]
    assert empty == [400] * 5  # no password was tried
    assert _sign_in(sign_in_limits, "super@antri.test", "correct-horse-1", ip).status_code == 302


@pytest.mark.parametrize("sign_in_limits", [{"LOGIN_LIMIT_PER_ACCOUNT": "2/second"}], indirect=True)
def test_the_back_off_ends_with_its_window(sign_in_limits, make_user):
    import time

    make_user("super@antri.test", "supervisor")
    ip = "10.0.8.6"
    assert [
        _sign_in(sign_in_limits, "super@antri.test", "no", ip).status_code for _ in range(3)
    ] == [
        400,
        400,
        429,
    ]
    time.sleep(1.1)
    assert _sign_in(sign_in_limits, "super@antri.test", "correct-horse-1", ip).status_code == 302


def test_the_refusal_speaks_english_on_the_english_page(sign_in_limits, make_user):
    make_user("super@antri.test", "supervisor")
    for _ in range(3):
        _sign_in(sign_in_limits, "super@antri.test", "no", "10.0.8.8", lang="en")
    refused = _sign_in(sign_in_limits, "super@antri.test", "no", "10.0.8.8", lang="en")
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.text


def test_sign_in_failures_count_across_app_processes(app, ctx, tmp_path, make_user, redis_url):
    """With Redis the budget is shared: a second app process sees the first's failures."""
    make_user("super@antri.test", "supervisor")
    apps = [
        _limited_app(
            app,
            tmp_path / name,
            RATELIMIT_STORAGE_URI=redis_url,
            LOGIN_LIMIT_PER_ACCOUNT="2/minute",
        )
        for name in ("a", "b")
    ]
    answers = [
        _sign_in(apps[i % 2], "super@antri.test", "no", "10.0.9.1").status_code for i in range(3)
    ]
    assert answers == [400, 400, 429]
    from extensions import db

    for each in apps:
        with each.app_context():
            db.engine.dispose()


def test_hostile_input_past_the_budget_is_no_500(sign_in_limits, make_user):
    """A NUL in the form is turned away (422) before the back-off or the audit could
    hand it to PostgreSQL; the budget is untouched by it."""
    ip = "10.0.9.5"
    for _ in range(3):
        _sign_in(sign_in_limits, "x@antri.test", "no", ip)
    assert _sign_in(sign_in_limits, "x\x00@antri.test", "no", ip).status_code == 422
    assert _sign_in(sign_in_limits, "x@antri.test", "no\x00", ip).status_code == 422
    assert _sign_in(sign_in_limits, "x@antri.test", "no", ip).status_code == 429
    assert len(_refusals()) == 1

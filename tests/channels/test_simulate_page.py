"""The staff page that plays a conversation (issue 17 §5): staff only, a whole USSD
booking through it, and no full NIK kept in the session cookie or shown back."""

from __future__ import annotations

from tests.channels.conftest import E164, bookings

NIK_OK = "3171041205900042"


def _login(client, make_user, role: str = "staff", point=None):
    make_user(f"{role}@antri.test", role, point)
    client.post("/login", data={"email": f"{role}@antri.test", "password": "correct-horse-1"})


def test_residents_cannot_open_the_simulator(client):
    answer = client.get("/staff/channels/simulate")
    assert answer.status_code in (302, 401)


def test_staff_book_by_ussd_on_the_page_and_the_nik_is_masked(
    client, make_user, make_point, make_slot, channels_on
):
    point = make_point(code="JKT-557", name="Pasar Latihan", kecamatan="Senen")
    make_slot(capacity=2, starts_in=180, point=point)
    _login(client, make_user, "staff", point)
    path = ["1", "senen", "1", "1", "1", NIK_OK, "Siti Aminah", "1"]
    for n in range(len(path) + 1):
        page = client.post(
            "/staff/channels/simulate",
            data={
                "channel": "ussd",
                "phone": "081234567890",
                "session": "lat-1",
                "text": "*".join(path[:n]),
            },
        )
        assert page.status_code == 200
    [booking] = bookings()
    assert (booking.channel, booking.phone) == ("ussd", E164)
    assert booking.code in page.text and "****0042" in page.text
    assert NIK_OK not in page.text
    cookie = client.get_cookie("session", domain="antri.test")
    from itsdangerous import base64_decode

    payload = cookie.value.lstrip(".").split(".")[0]
    import zlib

    raw = base64_decode(payload)
    text = (zlib.decompress(raw) if cookie.value.startswith(".") else raw).decode()
    assert "****0042" in text and NIK_OK not in text

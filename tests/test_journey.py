"""The whole journey through the JSON API: book, QR, scan, scan again, occupancy."""

from __future__ import annotations

import io

import zxingcpp
from PIL import Image


def test_book_decode_scan_and_watch(client, make_slot, make_user, nik, backend):
    slot = make_slot(capacity=3, starts_in=-5, minutes=30)
    point = slot.market_point
    _, staff_token = make_user("gate@antri.test", "staff", point)
    _, supervisor_token = make_user("boss@antri.test", "supervisor")

    booked = client.post(
        "/api/v1/bookings",
        json={"slot_id": slot.id, "name": "Siti Aminah", "nik": nik(), "phone": "0812-3456-7890"},
    )
    assert booked.status_code == 201, booked.json
    body = booked.json
    assert body["status"] == "confirmed"
    assert body["market_point"]["code"] == point.code
    assert body["slot"]["starts_at"].endswith("+07:00")
    assert len(body["code"]) == 8

    png = client.get(body["qr_png_url"])
    assert png.status_code == 200 and png.mimetype == "image/png"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.data)))
    assert [d.text for d in decoded] == [body["ticket"]]
    assert decoded[0].format == zxingcpp.BarcodeFormat.QRCode

    auth = {"Authorization": f"Bearer {staff_token}"}
    first = client.post("/api/v1/checkin", json={"ticket": decoded[0].text}, headers=auth)
    assert first.status_code == 200
    assert first.json["result"] == "admitted"
    assert first.json["reason"] is None
    assert first.json["booking"]["code"] == body["code"]
    assert first.json["inside_now"] == 1

    second = client.post("/api/v1/checkin", json={"ticket": body["ticket"]}, headers=auth)
    assert second.status_code == 200
    assert second.json["result"] == "refused"
    assert second.json["reason"] == "already_checked_in"
    assert "gate@antri.test" in second.json["message"]

    occupancy = client.get(
        "/api/v1/occupancy", headers={"Authorization": f"Bearer {supervisor_token}"}
    )
    assert occupancy.status_code == 200
    rows = {row["market_point"]["code"]: row for row in occupancy.json}
    assert rows[point.code] == {
        "market_point": {"code": point.code, "name": point.name},
        "inside_now": 1,
        "safe_limit": point.safe_limit,
        "booked_today": 1,
        "checked_in_today": 1,
        "stock": None,  # no stock set for the day (issue 15)
    }

    fetched = client.get(
        f"/api/v1/bookings/{body['code']}", query_string={"phone": "+6281234567890"}
    )
    assert fetched.status_code == 200
    assert fetched.json["status"] == "checked_in"
    assert fetched.json["ticket"] == body["ticket"]

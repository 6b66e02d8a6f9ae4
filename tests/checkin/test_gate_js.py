"""The gate page's offline verifier (static/gate/ticket.js) agrees with qr/tokens.py.

Python signs tickets; Node 20 runs the browser module on them: a genuine ticket gives
the same claims, and every kind of bad ticket the same refusal code. Skipped without
node or without ``make vendor``, except under CI=true.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from qr.tokens import TicketClaims, make_token

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
VENDOR = REPO / "static" / "vendor" / "noble-ed25519.js"

SCRIPT = """
import { verifyTicket } from "%s";
const cases = JSON.parse(process.argv[1]);
const out = [];
for (const c of cases.tokens) {
  const r = await verifyTicket(c, cases.keys);
  out.push(r.error ? {error: r.error} : {kid: r.kid, booking_id: r.bookingId,
    point_id: r.pointId, start: r.start.toISOString(), end: r.end.toISOString()});
}
console.log(JSON.stringify(out));
"""


def _public(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_js_verifier_matches_python():
    if NODE is None or not VENDOR.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("node and `make vendor` are required under CI")
        pytest.skip("node or static/vendor (make vendor) missing")
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    start = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
    good = make_token(
        TicketClaims(3, 4_000_000_001, 65_000, start, start + timedelta(minutes=30)), key
    )
    # Key id 1300 puts 0x05 in byte 1: the first Base45 character is a space.
    leading_space = make_token(TicketClaims(1300, 8, 7, start, start + timedelta(minutes=30)), key)
    assert leading_space[0] == " "
    swapped = good[:70] + ("A" if good[70] != "A" else "B") + good[71:]
    forged = make_token(TicketClaims(3, 42, 7, start, start + timedelta(minutes=30)), other)
    unknown = make_token(TicketClaims(9, 42, 7, start, start + timedelta(minutes=30)), key)
    tokens = [good, good.lower() + "\r\n", leading_space, swapped, forged, unknown, good[:-1],
              good[:-1] + "ı", "HELLO"]  # fmt: skip
    keys = [{"kid": 3, "public_key": _public(key)}, {"kid": 1300, "public_key": _public(key)}]
    script = SCRIPT % (REPO / "static" / "gate" / "ticket.js").as_uri()
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script, json.dumps({"tokens": tokens, "keys": keys})],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    claims = {"kid": 3, "booking_id": 4_000_000_001, "point_id": 65_000,
              "start": "2026-12-01T01:30:00.000Z", "end": "2026-12-01T02:00:00.000Z"}  # fmt: skip
    assert got[0] == claims and got[1] == claims
    assert got[2]["point_id"] == 7
    assert got[3]["error"] in {"invalid_signature", "invalid_format"}
    assert got[4:] == [
        {"error": "invalid_signature"},
        {"error": "unknown_key"},
        {"error": "invalid_format"},
        {"error": "invalid_format"},
        {"error": "invalid_format"},
    ]


WINDOW_SCRIPT = """
import { arrivalOf, windowRefusal } from "%s";
const c = JSON.parse(process.argv[1]);
const dayOf = (d) => new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Jakarta" }).format(d);
const start = new Date(c.start), end = new Date(c.end);
const out = c.cases.map(([booking, now]) => {
  const arrive = arrivalOf(booking, start);
  const w = windowRefusal(start, end, arrive, new Date(now), 15, 30, dayOf);
  return [w.reason, w.opens.toISOString()];
});
console.log(JSON.stringify(out));
"""


def test_offline_window_opens_from_the_arrival_wave():
    """static/gate/window.js, the offline gate's window, agrees with slots.window (issue
    15): from the snapshot's ``arrive_at`` less 15 minutes to the slot's end plus 30; a
    booking the snapshot does not hold (only its ticket) from the slot's start."""
    if NODE is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is required under CI")
        pytest.skip("node missing")
    from types import SimpleNamespace

    from slots.window import window_refusal

    start = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)  # 07:00 WIB
    end = start + timedelta(minutes=30)
    third = {"arrive_at": (start + timedelta(minutes=20)).isoformat()}
    at = [start + timedelta(minutes=m) for m in (-16, -15, 4, 5, 60, 61)]
    at.append(start - timedelta(days=1))
    cases = [(third, t.isoformat()) for t in at] + [
        (None, at[0].isoformat()),
        (None, at[1].isoformat()),
    ]
    script = WINDOW_SCRIPT % (REPO / "static" / "gate" / "window.js").as_uri()
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script,
         json.dumps({"start": start.isoformat(), "end": end.isoformat(), "cases": cases})],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    opens_third = "2026-12-04T00:05:00.000Z"
    opens_slot = "2026-12-03T23:45:00.000Z"
    assert got == [
        ["too_early", opens_third],
        ["too_early", opens_third],
        ["too_early", opens_third],
        ["", opens_third],
        ["", opens_third],
        ["too_late", opens_third],
        ["not_today", opens_third],
        ["too_early", opens_slot],
        ["", opens_slot],
    ]
    # The server's rule gives the same answers.
    settings = {"CHECKIN_EARLY_MINUTES": 15, "CHECKIN_LATE_MINUTES": 30}
    slot = SimpleNamespace(starts_at=start, ends_at=end)
    arrive = start + timedelta(minutes=20)
    server = [window_refusal(slot, t, "Asia/Jakarta", settings, arrive) for t in at]
    server += [window_refusal(slot, t, "Asia/Jakarta", settings) for t in at[:2]]
    assert server == [reason for reason, _ in got]

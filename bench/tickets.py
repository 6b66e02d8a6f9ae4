"""Ticket benchmark: Ed25519 signatures and verifications per second, QR render time.

.venv/bin/python bench/tickets.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.timeutil import UTC  # noqa: E402
from qr.keys import load_keyring  # noqa: E402
from qr.render import qr_png, qr_svg  # noqa: E402
from qr.tokens import TicketClaims, make_token, verify_token  # noqa: E402


def rate(seconds: float, action) -> tuple[float, int]:
    """Run ``action(i)`` repeatedly for ``seconds``; return (per second, count)."""
    count, end = 0, time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < end:
        action(count)
        count += 1
    return count / (time.perf_counter() - began), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ring = load_keyring(tmp)
    start = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)

    def claims(i: int) -> TicketClaims:
        return TicketClaims(ring.signing_kid, i + 1, 3, start, start + timedelta(minutes=30))

    tokens = [make_token(claims(i), ring.signing_key) for i in range(1000)]
    signs, _ = rate(args.seconds, lambda i: make_token(claims(i), ring.signing_key))
    verifies, _ = rate(args.seconds, lambda i: verify_token(tokens[i % 1000], ring.public_keys))
    png_rate, _ = rate(args.seconds, lambda i: qr_png(tokens[i % 1000]))
    svg_rate, _ = rate(args.seconds, lambda i: qr_svg(tokens[i % 1000]))
    print(f"token length: {len(tokens[0])} characters")
    print(f"sign (build + Ed25519 + Base45): {signs:,.0f}/s")
    print(f"verify (Base45 + Ed25519): {verifies:,.0f}/s")
    print(f"QR PNG render: {1000 / png_rate:.2f} ms each ({png_rate:,.0f}/s)")
    print(f"QR SVG render: {1000 / svg_rate:.2f} ms each ({svg_rate:,.0f}/s)")
    print(f"verify/sign ratio={verifies / signs:.2f}")


if __name__ == "__main__":
    main()

"""``/api/v1/keys``: the public keys that verify tickets (public)."""

from __future__ import annotations

from flask import jsonify

from api import bp
from api.responses import KeysOut
from api.spec import validate
from qr.service import public_keys_json


@bp.get("/keys")
@validate(ok=KeysOut, tags=("gate",))
def keys():
    """The public keys that verify tickets, for offline scanners (docs/tickets.md)."""
    response = jsonify({"keys": public_keys_json()})
    response.headers["Cache-Control"] = "public, max-age=300"
    return response

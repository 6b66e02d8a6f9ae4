"""``/api/v1/openapi.json`` and ``/api/v1/docs``: the API described (public)."""

from __future__ import annotations

from flask import jsonify, render_template

from api import bp
from api.spec import spec


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of every ``/api/v1`` route, built from the schemas."""
    response = jsonify(spec.spec)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/docs")
def docs():
    """A page rendering the document (Swagger UI, vendored into static/vendor)."""
    return render_template("api/docs.html")

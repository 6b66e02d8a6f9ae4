"""``/api/v1/openapi.json`` and ``/api/v1/docs``: the API described (public)."""

from __future__ import annotations

from typing import Any

from flask import jsonify, render_template

from api import bp
from api.spec import spec


def _document() -> dict[str, Any]:
    """The document spectree builds from the views, their docstrings and the schemas;
    the docstrings' reST literals (````x````) shown as Markdown code (```x```)."""
    document = spec.spec  # built once, on first use
    for item in document["paths"].values():
        for operation in item.values():
            for key in ("summary", "description"):
                operation[key] = operation.get(key, "").replace("``", "`")
    return document


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of every ``/api/v1`` route, built from the schemas."""
    response = jsonify(_document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/docs")
def docs():
    """A page rendering the document (Swagger UI, vendored into static/vendor)."""
    return render_template("api/docs.html")

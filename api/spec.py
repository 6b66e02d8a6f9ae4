"""The described API: one spectree instance validates every ``/api/v1`` body and
query with the pydantic schemas of ``api/schemas.py`` and builds the OpenAPI document.

Why spectree (pinned in requirements.txt): it decorates the existing Flask views and
blueprint (flask-openapi3 would replace the blueprint, and with it the ``url_for``
names pages use), speaks pydantic v2, and lets the plugin below own parsing, so a
validation fault comes out in the API's one error shape (``ApiError``) through the
app's DomainError handler, with the codes clients already know.

How a fault becomes a code (``_code``): a schema may raise a custom pydantic error
whose type is the code itself (``invalid_nonce``, ``batch_too_large``, ...);
otherwise the model's ``error_codes`` name the code of each field, the innermost
named one winning (``slot_id`` -> ``invalid_slot_id``); a fault with no code of its own is
``invalid_input``. Every schema fault is 422; a body that is not a JSON object is
422 ``invalid_json``, as it always was.

Responses are declared (for the document and the fuzz test) but not re-validated at
run time: that would cost CPU on the booking path and turn a shape slip into a 500.
``tests/api/test_openapi_fuzz.py`` checks every answer against its declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import make_response, request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from spectree import Response, SpecTree
from spectree.models import SecurityScheme, SecuritySchemeData
from spectree.plugins.base import Context
from spectree.plugins.flask_plugin import FlaskPlugin
from spectree.utils import is_list_item

from api.schemas import ApiError
from common.errors import ValidationError
from common.text import ensure_clean

BEARER = {"bearerAuth": []}

# Error statuses every route may answer (a busy database), and those of a bearer token.
COMMON_ERRORS = (503,)
AUTH_ERRORS = (401, 403)


def json_object(optional: bool = False) -> dict[str, Any]:
    """Return the request's JSON body, which must be an object.

    Args: optional, True where a body may be left out (then anything but an object
      counts as ``{}``).
    Returns: the parsed object, checked for NUL bytes and lone surrogates.
    Raises: ValidationError 422 ``invalid_json`` (not JSON, not an object, nested
      beyond Python's recursion limit); InvalidCharacters 422 ``invalid_characters``.
    """
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # absurdly deep nesting
        body = None
    if not isinstance(body, dict):
        if optional:
            return {}
        raise ValidationError("Send a JSON object.", code="invalid_json")
    ensure_clean(body)
    return body


def _field_name(loc: Iterable[Any]) -> str:
    """``("scans", 3, "nonce")`` -> ``"scans[3].nonce"``; the body itself -> ``""``."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _code(error: dict[str, Any], model: type[BaseModel] | None) -> str:
    """The API code of one pydantic error (rules in this module's docstring)."""
    if error["type"].startswith(("invalid_", "batch_")):
        return error["type"]
    codes: dict[str, str] = getattr(model, "error_codes", {})
    # The innermost named field with a code: scans[3].nonce is invalid_nonce,
    # scans[3].direction falls back to scans' invalid_scans.
    for part in reversed(error["loc"]):
        if isinstance(part, str) and part in codes:
            return codes[part]
    return codes.get("*", "invalid_input")


def as_api_error(err: PydanticValidationError, model: type[BaseModel] | None) -> ValidationError:
    """Turn a schema's validation error into the API's ValidationError (422): the code of
    the first fault (``_code``), its message, and ``fields`` naming every faulty field."""
    errors = err.errors(include_url=False, include_context=False, include_input=False)
    fields: dict[str, str] = {}
    for error in errors:
        fields.setdefault(_field_name(error["loc"]) or "body", error["msg"])
    first = errors[0]
    name = _field_name(first["loc"])
    message = f"'{name}': {first['msg']}" if name else first["msg"]
    return ValidationError(message, code=_code(first, model), fields=fields)


def query_items(args: Any, model: type[BaseModel]) -> dict[str, Any]:
    """The query string as ``model`` is validated with: each key's FIRST value, as
    every view read it before the schemas (``request.args.get``), and all of them only
    for a field declared as a list.

    Args: args, the request's query (a werkzeug MultiDict); model, the query schema.
    Returns: ``{key: value}``, a value a str, or a list of str for a list field.
    Rule: issue 13, lead's decision 5 (a repeated ``?date=`` or ``?market_point=`` is
      read as before, not refused as a list; spectree's ``get_multidict_items`` makes
      a list of any repeated key).
    """
    return {key: args.getlist(key) if is_list_item(key, model) else args.get(key) for key in args}


class _AntriFlaskPlugin(FlaskPlugin):
    """spectree's Flask plugin, parsing as the API always has (``json_object`` for a
    body, ``query_items`` for a query) and raising the API's error instead of
    answering spectree's own."""

    def request_validation(self, request, query, json, form, headers, cookies):
        """Validate the query and JSON body; put the models in ``request.context``."""
        raw_query = query_items(request.args, query) if query else None
        raw_json = None
        if json is not None:
            raw_json = json_object(optional=getattr(json, "optional_body", False))
        model = query
        try:
            parsed_query = query.model_validate(raw_query) if query else None
            model = json
            parsed_json = json.model_validate(raw_json) if json else None
        except PydanticValidationError as err:
            raise as_api_error(err, model) from None
        request.context = Context(parsed_query, parsed_json, None, None, None)

    def validate_response(self, resp, resp_model, skip_validation, force_resp_serialize):
        """Pass the view's answer through untouched (a stream stays a stream)."""
        return make_response(resp), None


spec = SpecTree(
    backend=_AntriFlaskPlugin,
    title="Antri API",
    version="1",
    description=(
        "Book pickup slots, scan tickets at the gate, watch occupancy. Every error "
        'body is {"error": code, "message": text, "fields": {name: message}}.'
    ),
    mode="strict",
    path="api/v1/docs",
    validation_error_status=422,
    validation_error_model=ApiError,
    # Plain schema names ("NewBooking"): the names are unique in api/schemas.py.
    naming_strategy=lambda model: getattr(model, "__name__", str(model)),
    nested_naming_strategy=lambda _parent, child: child,
    security_schemes=[
        SecurityScheme(
            name="bearerAuth",
            data=SecuritySchemeData(
                type="http", scheme="bearer", description="An API token (flask tokens)."
            ),
        )
    ],
)


class _Answers(Response):
    """spectree's Response, able to declare a body that is not JSON (spectree writes
    ``application/json`` for every model and nothing for a body without one)."""

    def __init__(self, *codes: str, media: dict[str, str] | None = None, **models: Any):
        """Args: codes and models, as spectree's Response; media, ``{status: media
        type}`` for answers whose body is text of that type (``{"200": "text/csv"}``)."""
        super().__init__(*codes, **models)
        self.media = dict(media or {})

    def generate_spec(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """spectree's declaration of the answers, with each ``media`` answer's content
        (a string body of its media type) added. Returns the OpenAPI responses object."""
        declared = super().generate_spec(*args, **kwargs)
        for status, media_type in self.media.items():
            declared[status]["content"] = {media_type: {"schema": {"type": "string"}}}
        return declared


def responses(ok: Any, *errors: int, status: int = 200, media: str | None = None) -> Response:
    """Declare a route's answers: ``ok`` (a schema, or None for a non-JSON body) with
    ``status``, and the ApiError body for each of ``errors`` and the busy 503.

    Args: media, the media type of a success body that is not JSON (``text/csv``,
      ``text/event-stream``), declared as text of that type (issue 13: every body of
      every ``/api/v1`` answer is declared); ``ok`` is then None.
    Returns: the spectree Response for ``spec.validate``.
    """
    declared: dict[str, Any] = {f"HTTP_{status}": ok}
    for code in (*errors, *COMMON_ERRORS):
        declared[f"HTTP_{code}"] = ApiError
    return _Answers(media={str(status): media} if media else None, **declared)


def validate(
    *errors: int,
    ok: Any = None,
    status: int = 200,
    media: str | None = None,
    auth: bool = False,
    tags: tuple[str, ...] = (),
) -> Callable:
    """Decorate an API view: validate its ``query``/``json`` (the view's annotated
    keyword arguments) and declare its answers for the OpenAPI document.

    Args: errors, the error statuses the route can answer; ok and status, the success
      body's schema and status; media, the success body's media type when it is not
      JSON (``responses``); auth, whether it takes a bearer token (401/403 added).
    Returns: the decorator. Errors: a fault in the query or body raises the API's
      ValidationError (422) from the plugin's ``request_validation``.
    """
    codes = (*errors, *AUTH_ERRORS) if auth else errors
    return spec.validate(
        resp=responses(ok, *sorted(set(codes)), status=status, media=media),
        security=BEARER if auth else None,
        tags=tags,
    )

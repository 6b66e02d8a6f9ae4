"""The base of every domain error, mapped to HTTP by one handler in ``app.py``."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l


class DomainError(Exception):
    """A rule refused a request.

    Attributes:
      code: stable machine-readable code (``slot_full``, ``invalid_nik``, ...); clients
        and tests rely on it, never on the wording.
      message: a plain-language explanation (lazy-translated where possible).
      status: the HTTP status the API answers with.
      fields: ``{field name: message}`` for a fault in named input fields (empty
        otherwise); every JSON error body carries it.
      details: extra JSON-safe fields for the response body.
    """

    code = "error"
    status = 400
    default_message = _l("The request could not be completed.")

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        fields: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        self.code = code or self.code
        self.status = status or self.status
        self.message = message if message is not None else self.default_message
        self.fields = dict(fields or {})
        self.details = details
        super().__init__(f"{self.code}: {self.message}")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON body ``{"error": code, "message": text, "fields": {name:
        message}, **details}`` (the one error shape of the API, docs in api/schemas.py)."""
        fields = {name: str(text) for name, text in self.fields.items()}
        return {"error": self.code, "message": str(self.message), "fields": fields, **self.details}


class NotFound(DomainError):
    """The thing asked for does not exist (or the caller may not know it does)."""

    code = "not_found"
    status = 404
    default_message = _l("Not found.")


class ValidationError(DomainError):
    """Input is malformed; 422 with a code naming the field's fault."""

    code = "invalid_input"
    status = 422
    default_message = _l("The input is not valid.")


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    code = "forbidden"
    status = 403
    default_message = _l("You may not do this.")

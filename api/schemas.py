"""The API's requests, declared once: the pydantic schemas spectree validates each
body and query with and publishes in ``GET /api/v1/openapi.json`` (api/spec.py),
and the one error body. Response bodies are in api/responses.py.

A request schema's ``error_codes`` name the error code of each field's fault (the
codes clients know: ``invalid_slot_id``, ``invalid_nik``, ...); ``"*"`` is the code
of any other fault of that schema. Extra fields in a body are ignored, as they were.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from checkin.offline import MAX_SYNC_SCANS
from common.timeutil import parse_day

# Building blocks ------------------------------------------------------------------


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _day(value: str) -> date:
    try:
        return parse_day(value)
    except ValueError:
        raise ValueError("must be a date YYYY-MM-DD between 2000 and 2100") from None


NonBlank = Annotated[StrictStr, AfterValidator(_non_blank)]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry its UTC offset")
    return value


# An instant with its UTC offset (ISO 8601), e.g. 2026-12-05T08:00:00+07:00.
AwareInstant = Annotated[datetime, AfterValidator(_aware)]
Day = Annotated[str, AfterValidator(_day), Field(json_schema_extra={"format": "date"})]
# A client's scan nonce: what a UUID, a ULID or a counter with a prefix looks like.
Nonce = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
# What a gate scanned: a ticket token or a booking code (the view says which is used);
# null or left out where the other one is sent. Declared nullable: a default of null
# must be valid for the field's own schema (OpenAPI 3.1 is JSON Schema 2020-12).
Scanned = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]})]
# When an offline scan was made (null or left out: refused for that scan alone).
ScannedAt = Annotated[
    Any,
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}),
]


class Request(BaseModel):
    """A request body or query; ``error_codes`` maps field -> error code (module doc)."""

    error_codes: ClassVar[dict[str, str]] = {}
    # True where the body may be left out (anything but a JSON object counts as {}).
    optional_body: ClassVar[bool] = False


# Requests ---------------------------------------------------------------------------


class PointSearch(Request):
    """``GET /market-points``: ``q`` filters by name, kecamatan or city."""

    q: str = ""


def _empty_as_absent(value: Any) -> Any:
    return None if value == "" else value


class DayQuery(Request):
    """A point's slot list: ``date``, a local calendar day ``YYYY-MM-DD`` (default, or
    ``?date=`` left empty as a form sends it: today where the point is)."""

    error_codes: ClassVar[dict[str, str]] = {"date": "invalid_date"}
    date: Annotated[Day | None, BeforeValidator(_empty_as_absent)] = None


class ResidentLookup(Request):
    """A resident proves a booking or waiting place is theirs with its phone number."""

    phone: str = ""


class PhoneBody(Request):
    """``{phone}``: the phone number the booking or waiting place was made with."""

    error_codes: ClassVar[dict[str, str]] = {"phone": "invalid_phone"}
    phone: StrictStr | None = None


_RESIDENT_CODES = {
    name: f"invalid_{name}" for name in ("slot_id", "name", "nik", "phone", "language", "kk")
}


class NewBooking(Request):
    """``POST /bookings``: who books which slot. ``nik`` is the 16-digit NIK, ``kk`` the
    family card number where the point limits households, ``language`` of the
    resident's messages ``id`` (default) or ``en``; the services check their form."""

    error_codes: ClassVar[dict[str, str]] = _RESIDENT_CODES
    slot_id: StrictInt
    name: NonBlank
    nik: NonBlank
    phone: NonBlank
    language: StrictStr = "id"
    kk: StrictStr | None = None


class NewWaitingEntry(Request):
    """``POST /slots/{id}/waiting-list``: the same resident fields as a booking."""

    error_codes: ClassVar[dict[str, str]] = _RESIDENT_CODES
    name: NonBlank
    nik: NonBlank
    phone: NonBlank
    language: StrictStr = "id"
    kk: StrictStr | None = None


class GateQuery(Request):
    """The gate's market point (staff default to their own)."""

    # The code a body's market_point fault has (ScanBody, OfflineBatch).
    error_codes: ClassVar[dict[str, str]] = {"market_point": "invalid_market_point"}
    market_point: str | None = None


class ExportQuery(Request):
    """A day (default today; an empty ``?date=`` is refused, as it always was) and,
    optionally, one market point."""

    error_codes: ClassVar[dict[str, str]] = {
        "date": "invalid_date",
        "market_point": "invalid_market_point",
    }
    date: Day | None = None
    market_point: str | None = None


class ScanBody(Request):
    """``POST /checkin`` and ``/checkout``: the scanned ``ticket`` or typed ``code``;
    ``market_point`` (supervisors name it; staff default to their own), optional
    ``device`` label and ``nonce`` (a resend of a nonce answers the first result)."""

    error_codes: ClassVar[dict[str, str]] = {
        "nonce": "invalid_nonce",
        "device": "invalid_device",
        "market_point": "invalid_market_point",
    }
    ticket: Scanned = None
    code: Scanned = None
    nonce: Nonce | None = None
    device: StrictStr | None = None
    market_point: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _something_scanned(cls, data: Any) -> Any:
        # First, as the gate always checked it: a scan with nothing scanned.
        if not isinstance(data, dict):
            return data  # the model's own check refuses it
        scanned = data.get("ticket") if data.get("ticket") is not None else data.get("code")
        if not isinstance(scanned, str) or not scanned.strip():
            raise PydanticCustomError("invalid_scan", "Send 'ticket' or 'code'.")
        return data

    @property
    def scanned(self) -> str:
        """The scanned text: the ticket if sent, else the code."""
        return self.ticket if self.ticket is not None else self.code


class UndoBody(Request):
    """``POST /checkins/{code}/undo``: an optional ``device`` label; the body may be
    left out."""

    error_codes: ClassVar[dict[str, str]] = {"device": "invalid_device"}
    optional_body: ClassVar[bool] = True
    device: StrictStr | None = None


def _batch_size(items: Any) -> Any:
    if isinstance(items, list) and len(items) > MAX_SYNC_SCANS:
        raise PydanticCustomError(
            "batch_too_large", "Send at most {most} scans at once.", {"most": MAX_SYNC_SCANS}
        )
    return items


class OfflineScanItem(BaseModel):
    """One queued scan: its own ``nonce``, ``scanned_at`` (ISO 8601 with offset; an
    unusable one is rejected on its own), the ``ticket`` or ``code``, ``direction``,
    and what the device answered offline."""

    nonce: Nonce
    scanned_at: ScannedAt = None
    ticket: Scanned = None
    code: Scanned = None
    direction: Literal["in", "out"] = "in"
    local_result: Literal["admitted", "refused", "wait", "checked_out"] = "admitted"
    # A falsy value counts as no reason, as the gate always read it.
    local_reason: Annotated[StrictStr | None, BeforeValidator(lambda v: v or None)] = None


class OfflineBatch(Request):
    """``POST /checkin/sync``: an offline gate's queued scans (at most 500)."""

    error_codes: ClassVar[dict[str, str]] = {
        "scans": "invalid_scans",
        "nonce": "invalid_nonce",
        "device": "invalid_device",
        "market_point": "invalid_market_point",
    }
    scans: Annotated[
        list[OfflineScanItem], BeforeValidator(_batch_size), Field(max_length=MAX_SYNC_SCANS)
    ]
    device: StrictStr | None = None
    market_point: StrictStr | None = None

    @model_validator(mode="after")
    def _own_nonces(self) -> OfflineBatch:
        seen: set[str] = set()
        for number, item in enumerate(self.scans):
            if item.nonce in seen:
                raise PydanticCustomError(
                    "invalid_nonce", "scans[{number}] needs its own 'nonce'.", {"number": number}
                )
            seen.add(item.nonce)
        return self


class NewCapacity(Request):
    """``PATCH /slots/{id}``: exactly ``{"capacity": n}``, n a whole number 0-10000."""

    model_config = ConfigDict(extra="forbid")
    error_codes: ClassVar[dict[str, str]] = {"*": "invalid_capacity"}
    capacity: StrictInt


class StockBody(Request):
    """``PUT /market-points/{code}/stock/{date}``: ``packages`` on hand (0-1000000) and
    ``per_booking``, the packages one booking takes (1-100, default 1). Nothing else:
    a misspelt ``per_booking`` (``perBooking``) is refused, not read as 1."""

    model_config = ConfigDict(extra="forbid")
    error_codes: ClassVar[dict[str, str]] = {"*": "invalid_stock"}
    packages: StrictInt
    per_booking: StrictInt = 1


class ProxyBody(Request):
    """``POST /bookings/{code}/proxy``: the booking's ``phone`` (proves it is the
    resident's, as for cancel) and the proxy's ``proxy_name`` and 16-digit
    ``proxy_nik``; the services check their form (issue 15 part 3)."""

    error_codes: ClassVar[dict[str, str]] = {
        "phone": "invalid_phone",
        "proxy_name": "invalid_name",
        "proxy_nik": "invalid_nik",
    }
    phone: StrictStr | None = None
    proxy_name: NonBlank
    proxy_nik: NonBlank


class ProxyRemoval(Request):
    """``DELETE /bookings/{code}/proxy``: ``{phone}`` as for cancel; the body may be left
    out when ``?phone=`` is in the query instead."""

    error_codes: ClassVar[dict[str, str]] = {"phone": "invalid_phone"}
    optional_body: ClassVar[bool] = True
    phone: StrictStr | None = None


class BookingMove(Request):
    """``POST /bookings/{code}/move``: the slot to move to."""

    error_codes: ClassVar[dict[str, str]] = {"slot_id": "invalid_slot_id"}
    slot_id: StrictInt


class NewBallot(Request):
    """``POST /ballots`` (issue 16): a market point's code, the local ``date`` of the
    slots, and the entry window ``opens_at`` .. ``closes_at`` (ISO 8601 instants with
    their UTC offset)."""

    error_codes: ClassVar[dict[str, str]] = {
        "market_point": "invalid_market_point",
        "date": "invalid_date",
        "*": "invalid_ballot",
    }
    market_point: NonBlank
    date: Day
    opens_at: AwareInstant
    closes_at: AwareInstant


class BallotQuery(Request):
    """``GET /ballots``: filter by market point code and local date (both optional)."""

    error_codes: ClassVar[dict[str, str]] = {"date": "invalid_date"}
    market_point: str = ""
    date: Annotated[Day | None, BeforeValidator(_empty_as_absent)] = None


class NewBallotEntry(Request):
    """``POST /ballots/{id}/entries`` (issue 16 §2): the resident fields of a booking and
    ``preferences``, one to three slot ids of the ballot's day, first choice first."""

    error_codes: ClassVar[dict[str, str]] = {
        **_RESIDENT_CODES,
        "preferences": "invalid_preferences",
    }
    name: NonBlank
    nik: NonBlank
    phone: NonBlank
    preferences: Annotated[list[StrictInt], Field(min_length=1, max_length=3)]
    language: StrictStr = "id"
    kk: StrictStr | None = None


# The error body --------------------------------------------------------------------------


class ApiError(BaseModel):
    """Every error body: a stable ``error`` code, a plain ``message``, and ``fields``
    naming each faulty input field with its message (may be empty). Some codes add
    facts (``booked``, ``retry_after``, ...)."""

    error: str
    message: str
    fields: dict[str, str]


# Phone channels (issue 17) -----------------------------------------------------------


class InboundSms(BaseModel):
    """An SMS a gateway passes on: its own message ``id`` (a resend carries the same),
    the sender ``from`` (becomes the booking's phone), the ``text``, and when it
    arrived (``at``, ISO 8601; kept for nothing: the server's clock decides). Checked
    after the signature (X-Antri-Signature), so it is parsed by the view."""

    model_config = ConfigDict(populate_by_name=True)
    error_codes: ClassVar[dict[str, str]] = {"id": "invalid_message_id", "*": "invalid_input"}

    id: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    sender: Annotated[StrictStr, Field(alias="from", min_length=1, max_length=32)]
    # A long text (concatenated SMS, a paste) is still a resident's message: taken and
    # answered (its first TEXT_KEPT characters read), not refused; the body limit
    # (MAX_CONTENT_LENGTH, 413) bounds it.
    text: Annotated[StrictStr, Field(max_length=16000)]
    at: StrictStr | None = None

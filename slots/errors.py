"""Domain errors of booking: each has a stable code and a plain message."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from common.errors import DomainError, NotFound, ValidationError


class InvalidNIK(ValidationError):
    """The NIK fails a rule; ``fault`` says which (length, region, birth_date, serial)."""

    code = "invalid_nik"
    default_message = _l("The NIK is not valid.")


class InvalidKK(ValidationError):
    """The family card (KK) number is missing or fails a rule (``fault`` says which)."""

    code = "invalid_kk"
    default_message = _l("This market point asks for your family card (KK) number.")


class InvalidPhone(ValidationError):
    """The phone number cannot be parsed as an Indonesian mobile number."""

    code = "invalid_phone"
    default_message = _l(
        "The phone number is not valid. Use a mobile number such as 0812 3456 7890."
    )


class InvalidLanguage(ValidationError):
    """The message language is not one Antri writes in."""

    code = "invalid_language"
    default_message = _l("The language must be 'id' (Bahasa Indonesia) or 'en' (English).")


class InvalidName(ValidationError):
    """The name is empty or too long."""

    code = "invalid_name"
    default_message = _l("Enter your name as on your KTP (2 to 120 characters).")


class SlotNotFound(NotFound):
    """No published slot has this id."""

    code = "slot_not_found"
    default_message = _l("This slot does not exist.")


class MarketPointNotFound(NotFound):
    """No active market point has this code."""

    code = "market_point_not_found"
    default_message = _l("This market point does not exist.")


class BookingNotFound(NotFound):
    """No booking matches this code and phone (one answer for both faults)."""

    code = "booking_not_found"
    default_message = _l("No booking matches this code and phone number.")


class SlotFull(DomainError):
    """Every place of the slot is taken."""

    code = "slot_full"
    status = 409
    default_message = _l("This slot is full. Please choose another slot.")


class SlotClosed(DomainError):
    """The slot has ended, so it can no longer be booked."""

    code = "slot_closed"
    status = 409
    default_message = _l("This slot has already ended. Please choose a later slot.")


class SlotClosedByMarket(SlotClosed):
    """The market closed the slot: no booking, no waiting list."""

    default_message = _l("The market closed this slot. Please choose another slot.")


class LimitReached(DomainError):
    """The NIK already holds the most active bookings allowed in the rolling window."""

    code = "limit_reached"
    status = 409
    default_message = _l(
        "This NIK has reached its booking limit for this period. "
        "Cancel the other booking first if you want this one."
    )


class HouseholdLimitReached(DomainError):
    """The family card already holds BOOKING_LIMIT_PER_KK bookings in the window, at a
    market point that limits bookings per household."""

    code = "household_limit_reached"
    status = 409
    default_message = _l(
        "Your household (family card) already has a booking in this period. "
        "One booking per household is allowed here."
    )


class CancelNotAllowed(DomainError):
    """The booking can no longer be cancelled (not confirmed, or past the cut-off)."""

    code = "cancel_not_allowed"
    status = 409
    default_message = _l("This booking can no longer be cancelled.")


class InvalidSlotRange(ValidationError):
    """A slot generation request has an impossible time range or length."""

    code = "invalid_slot_range"
    default_message = _l("The slot times are not valid.")


class SlotOverlap(DomainError):
    """A new slot would overlap an existing slot of a different window."""

    code = "slot_overlap"
    status = 409
    default_message = _l("These slots would overlap existing slots at this market point.")


class SlotNotFull(DomainError):
    """The slot still has places: book it instead of joining its waiting list."""

    code = "slot_not_full"
    status = 409
    default_message = _l("This slot still has free places. Book it directly.")


class AlreadyWaiting(DomainError):
    """The resident is already on this slot's waiting list."""

    code = "already_waiting"
    status = 409
    default_message = _l("You are already on the waiting list for this slot.")


class NotWaiting(DomainError):
    """The waiting-list entry is no longer waiting (promoted, left or expired)."""

    code = "not_waiting"
    status = 409
    default_message = _l("You are no longer on this waiting list.")


class WaitingEntryNotFound(NotFound):
    """No waiting-list entry matches this code and phone."""

    code = "waiting_entry_not_found"
    default_message = _l("No waiting-list place matches this code and phone number.")


class InvalidIdempotencyKey(ValidationError):
    """The Idempotency-Key header is empty, too long or not printable ASCII."""

    code = "invalid_idempotency_key"
    default_message = _l("The Idempotency-Key must be 1 to 200 printable ASCII characters.")


class IdempotencyKeyReused(ValidationError):
    """The Idempotency-Key was already used for a different request."""

    code = "idempotency_key_reused"
    default_message = _l("This Idempotency-Key was already used for a different request.")


class AlreadyBooked(DomainError):
    """The resident already has a place in this slot."""

    code = "already_booked"
    status = 409
    default_message = _l("You already have a booking in this slot.")


class CapacityBelowBooked(DomainError):
    """A slot's capacity may not go below the places already booked in it."""

    code = "capacity_below_booked"
    status = 409
    default_message = _l("The capacity cannot be lower than the places already booked.")


class InvalidCapacity(ValidationError):
    """A capacity must be a whole number from 0 to 10000."""

    code = "invalid_capacity"
    default_message = _l("The capacity must be a whole number from 0 to 10000.")


class BookingNotMovable(DomainError):
    """Only a confirmed booking can move, and only to another open slot that has not
    ended."""

    code = "booking_not_movable"
    status = 409
    default_message = _l("Only a confirmed booking can be moved, to another open slot.")


class InvalidSchedule(ValidationError):
    """A schedule's fields do not make sense together (``fault`` says which)."""

    code = "invalid_schedule"
    default_message = _l("The schedule is not valid.")


class InvalidMarketPoint(ValidationError):
    """A market point's fields are not valid (``fault`` says which)."""

    code = "invalid_market_point"
    default_message = _l("The market point is not valid.")


class SoldOut(DomainError):
    """The point-day's stock cannot cover one more booking (issue 15): every package is
    reserved. The waiting list stays open."""

    code = "sold_out"
    status = 409
    default_message = _l("The goods for this day are sold out. You may join the waiting list.")


class StockBelowReserved(DomainError):
    """A point-day's packages may not go below those already reserved by its bookings
    (issue 15); ``reserved`` says how many are."""

    code = "stock_below_reserved"
    status = 409
    default_message = _l("The packages cannot be fewer than those already reserved.")


class StockNotSet(NotFound):
    """The market point has no stock setting on this date (no stock limit that day)."""

    code = "stock_not_set"
    default_message = _l("No stock is set for this market point on this date.")


class InvalidStock(ValidationError):
    """Stock numbers out of range: packages a whole number from 0 to 1000000, packages
    per booking from 1 to 100 (``fields`` names the faulty one)."""

    code = "invalid_stock"
    default_message = _l(
        "Packages must be a whole number from 0 to 1000000, and packages per booking from 1 to 100."
    )


class ProxyNotAllowed(DomainError):
    """Only a confirmed booking can have its proxy named or removed (issue 15 part 3):
    a checked-in, finished, cancelled or no-show booking has nothing left to collect."""

    code = "proxy_not_allowed"
    status = 409
    default_message = _l(
        "A proxy can be named or removed only for a confirmed booking that has not been "
        "collected yet."
    )


class ProxyIsResident(ValidationError):
    """The proxy's NIK is the resident's own: the resident needs no proxy."""

    code = "proxy_is_resident"
    default_message = _l(
        "This is your own NIK. A proxy is someone else who collects for you; "
        "you do not need one to come yourself."
    )


class ProxyLimitReached(DomainError):
    """The proxy already collects for PROXY_LIMIT_PER_DAY active bookings on the
    booking's local date, over every market point (issue 15 part 3)."""

    code = "proxy_limit_reached"
    status = 409
    default_message = _l(
        "This person already collects for the most bookings allowed on this day. "
        "Please name someone else."
    )


class BallotRunning(DomainError):
    """The slot's day is released by a ballot (issue 16): no first-come booking and no
    waiting-list join until its draw; enter the ballot instead."""

    code = "ballot_running"
    status = 409
    default_message = _l(
        "The places of this day are given by a ballot (undian). Enter the ballot instead."
    )

"""Pickup by a proxy (issue 15 part 3; DESIGN.md "Proxy").

A resident names one person, the proxy, to collect a booking for them; the gate checks
the proxy's KTP against the name and NIK's last four digits. One person collects for at
most PROXY_LIMIT_PER_DAY active bookings per local date, over every market point: a
per-person hard cap like the per-NIK booking limit, serialised by the same lock row
(the ``resident`` row of the proxy's NIK, ``slots.locks.lock_resident``), taken after the
booking's row in the lock order (``common.locking``).

Every path (the API, the ticket page, the assisted booking desk) calls ``set_proxy`` and
``remove_proxy``; the gate and the answers read ``active_proxy`` / ``proxy_summary``.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from common.errors import ValidationError
from common.timeutil import local_date, utcnow
from extensions import db
from notify.outbox import rearm_notice
from slots.errors import InvalidName, ProxyIsResident, ProxyLimitReached, ProxyNotAllowed
from slots.identity import clean_name, hash_nik, validate_nik
from slots.locks import lock_confirmed_booking, lock_resident
from slots.models import ACTIVE_STATUSES, Booking, BookingProxy, Resident


def active_proxy(booking_id: int) -> BookingProxy | None:
    """Return the proxy named for booking ``booking_id`` now, or None (none named, or
    removed)."""
    return db.session.scalar(
        select(BookingProxy).where(
            BookingProxy.booking_id == booking_id, BookingProxy.removed_at.is_(None)
        )
    )


def proxy_summary(booking_id: int) -> dict[str, str] | None:
    """Return what the resident, the API and the gate are shown of booking
    ``booking_id``'s proxy: ``{name, nik_last4}``, or None when none is named."""
    proxy = active_proxy(booking_id)
    return None if proxy is None else {"name": proxy.name, "nik_last4": proxy.nik_last4}


def proxy_faults(name: str, nik: str) -> dict[str, ValidationError]:
    """Check a proxy's name and NIK as typed, by the resident rules (``clean_name``,
    ``validate_nik``).

    Returns: ``{"proxy_name" | "proxy_nik": the error its rule raised}``, empty when both
      pass; the messages name the fault, never the NIK typed, and speak of the proxy's
      name ("their name"), not the resident's.
    """
    faults: dict[str, ValidationError] = {}
    for field, check, value in (("proxy_name", clean_name, name), ("proxy_nik", validate_nik, nik)):
        try:
            check(value)
        except InvalidName:
            # The resident rule's words ask for "your name": this is someone else's.
            faults[field] = InvalidName(PROXY_NAME_MESSAGE)
        except ValidationError as exc:
            faults[field] = exc
    return faults


PROXY_NAME_MESSAGE = _l("Enter their name as on their KTP (2 to 120 characters).")


def check_proxy(name: str, nik: str) -> None:
    """Check a proxy's name and NIK as typed, before anything is written (the assisted
    booking desk checks them before it books). Raises: as ``set_proxy`` for them
    (``invalid_name`` / ``invalid_nik`` with ``fields``)."""
    _raise_faults(proxy_faults(name, nik))


def _raise_faults(faults: dict[str, ValidationError]) -> None:
    """Raise the first fault (its own code: ``invalid_name``, ``invalid_nik``) with
    ``fields`` naming every faulty field."""
    if faults:
        first = next(iter(faults.values()))
        first.fields = {field: str(exc.message) for field, exc in faults.items()}
        raise first


def _lock_confirmed(booking: Booking) -> None:
    """Take ``booking``'s row lock while it is confirmed and read it afresh (a move
    committed meanwhile changed its slot). Raises ProxyNotAllowed (409) otherwise."""
    if lock_confirmed_booking(booking.id) is None:
        db.session.refresh(booking)
        raise ProxyNotAllowed(booking_status=booking.status)
    db.session.refresh(booking)


def proxy_day(booking: Booking):
    """The local date (the market point's zone) of ``booking``'s slot: the date the
    proxy limit counts on."""
    return local_date(booking.slot.starts_at, booking.slot.market_point.timezone)


def set_proxy(booking: Booking, name: str, nik: str, now: datetime | None = None) -> BookingProxy:
    """Name (or replace) the proxy who collects ``booking`` for its resident.

    The caller has proved the booking is the resident's (code and phone, or the
    ticket's capability URL and phone, or staff at the assisted booking desk).
    Args: booking; name, the proxy's name as on their KTP; nik, their 16-digit NIK
      (separators allowed); now, aware UTC.
    Returns: the proxy row (flushed); a ``proxy_set`` message to the resident is owed
      (the one row per booking and kind is armed afresh).
    Raises: InvalidName / InvalidNIK (422 ``invalid_name`` / ``invalid_nik``, ``fields``
      naming ``proxy_name`` / ``proxy_nik``); ProxyNotAllowed (409) when the booking is
      not confirmed; ProxyIsResident (422, field ``proxy_nik``) for the resident's own
      NIK; ProxyLimitReached (409 ``proxy_limit_reached``, with ``limit``) when the
      person already collects for PROXY_LIMIT_PER_DAY active bookings on the booking's
      local date, at any point. Rule: issue 15 part 3.
    """
    now = now or utcnow()
    check_proxy(name, nik)
    clean, digits = clean_name(name), validate_nik(nik)
    nik_hash = hash_nik(digits, current_app.config["NIK_HASH_KEY"])
    _lock_confirmed(booking)
    own = db.session.scalar(select(Resident.nik_hash).where(Resident.id == booking.resident_id))
    if own == nik_hash:
        raise ProxyIsResident(fields={"proxy_nik": str(ProxyIsResident.default_message)})
    day = proxy_day(booking)
    # The proxy's lock row, after the booking's (the lock order): two bookings naming
    # one person decide one after the other, and the second counts the first.
    lock_resident(nik_hash, digits[-4:])
    limit = current_app.config["PROXY_LIMIT_PER_DAY"]
    if _collecting(nik_hash, day, booking.id) >= limit:
        raise ProxyLimitReached(limit=limit)
    proxy = db.session.scalar(select(BookingProxy).where(BookingProxy.booking_id == booking.id))
    if proxy is None:
        proxy = BookingProxy(booking_id=booking.id)
        db.session.add(proxy)
    elif proxy.removed_at is None and (proxy.nik_hash, proxy.name) == (nik_hash, clean):
        return proxy  # named again as they are: nothing changes, no second message
    proxy.name, proxy.nik_hash, proxy.nik_last4 = clean, nik_hash, digits[-4:]
    proxy.day, proxy.created_at, proxy.removed_at = day, now, None
    db.session.flush()
    rearm_notice(booking, "proxy_set", now, now)
    return proxy


def _collecting(nik_hash: str, day, other_than: int) -> int:
    """Active bookings (confirmed, checked in or out) other than ``other_than`` that the
    person with ``nik_hash`` is the named proxy of on local date ``day`` (count)."""
    return db.session.scalar(
        select(func.count(BookingProxy.id))
        .join(Booking, Booking.id == BookingProxy.booking_id)
        .where(
            BookingProxy.nik_hash == nik_hash,
            BookingProxy.day == day,
            BookingProxy.removed_at.is_(None),
            BookingProxy.booking_id != other_than,
            Booking.status.in_(ACTIVE_STATUSES),
        )
    )


def remove_proxy(booking: Booking, now: datetime | None = None) -> BookingProxy | None:
    """Remove ``booking``'s proxy: only the resident collects again.

    Args: booking (ownership proved by the caller, as for ``set_proxy``); now, aware UTC.
    Returns: the removed proxy row, or None when none was named (nothing changes, no
      message); otherwise a ``proxy_removed`` message to the resident is owed.
    Raises: ProxyNotAllowed (409) when the booking is not confirmed. Rule: issue 15 part 3.
    """
    now = now or utcnow()
    _lock_confirmed(booking)
    proxy = active_proxy(booking.id)
    if proxy is None:
        return None
    proxy.removed_at = now
    db.session.flush()
    rearm_notice(booking, "proxy_removed", now, now)
    return proxy


def move_proxy_day(booking: Booking) -> None:
    """Keep a proxy's local date with its booking's slot after a move to another day
    (the proxy limit counts on it). The move is the market's decision: it is not
    refused for the proxy's limit."""
    proxy = active_proxy(booking.id)
    if proxy is not None:
        proxy.day = proxy_day(booking)

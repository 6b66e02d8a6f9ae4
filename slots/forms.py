"""The booking form. Fields are checked by ``slots.booking.book_slot``, the one rule set."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, TelField


class BookingForm(FlaskForm):
    """Name, NIK and phone of the resident booking a slot (CSRF-protected)."""

    name = StringField(_l("Full name (as on KTP)"))
    nik = StringField(_l("NIK (16 digits)"))
    phone = TelField(_l("Mobile phone number"))
    # Asked only where the market point limits bookings per household.
    kk = StringField(_l("Family card (KK) number, 16 digits"))
    # A random id per rendered form: a double tap or a resend is one booking, not two.
    request_id = HiddenField()


class WaitingListForm(FlaskForm):
    """Name, NIK and phone of a resident joining a full slot's waiting list."""

    name = StringField(_l("Full name (as on KTP)"))
    nik = StringField(_l("NIK (16 digits)"))
    phone = TelField(_l("Mobile phone number"))
    kk = StringField(_l("Family card (KK) number, 16 digits"))


class LeaveForm(FlaskForm):
    """An empty form: only its CSRF token matters."""

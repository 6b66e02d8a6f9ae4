"""Ticket look-up and cancel forms."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField, TelField


class LookupForm(FlaskForm):
    """Booking code and the phone number it was made with."""

    code = StringField(_l("Booking code"))
    phone = TelField(_l("Mobile phone number"))


class CancelForm(FlaskForm):
    """The second step of a cancel (issue 14 item 11): rendered only on the confirmation
    page, so a post without ``confirm=yes`` (one tap, no page between) cancels nothing."""

    confirm = HiddenField(default="yes")

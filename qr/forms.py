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


class ProxyForm(FlaskForm):
    """Name the person who collects for the resident (issue 15 part 3): their name and
    NIK, and the booking's phone number, which proves the booking is the resident's
    (the ticket's link alone may have been forwarded). Checked by ``slots.proxy``."""

    proxy_name = StringField(_l("Their full name (as on KTP)"))
    proxy_nik = StringField(_l("Their NIK (16 digits)"))
    phone = TelField(_l("Your mobile phone number (of this booking)"))


class RemoveProxyForm(FlaskForm):
    """Remove the proxy: the booking's phone number proves it is the resident's."""

    phone = TelField(_l("Your mobile phone number (of this booking)"))

"""The gate's scan form."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional, Regexp


class ScanForm(FlaskForm):
    """One field: a scanner's keystrokes (the QR payload) or a typed booking code."""

    direction = RadioField(
        _l("Mode"),
        choices=[SelectChoice("in", _l("Check-in")), SelectChoice("out", _l("Check-out"))],
        default="in",
        validators=[Optional()],  # a bare scan (no mode sent) is a check-in
    )
    scan = StringField(_l("Scan the QR code or type the booking code"))
    # A fresh id per render: a resent form is the same scan (checkin.scanning nonces).
    nonce = HiddenField(validators=[Optional(), Regexp(r"^[0-9a-f]{32}$")])

"""The gate's scan form."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField


class ScanForm(FlaskForm):
    """One field: a scanner's keystrokes (the QR payload) or a typed booking code."""

    scan = StringField(_l("Scan the QR code or type the booking code"))

"""Admin forms (Flask-WTF, CSRF-protected). They only shape input: the rules live in
``slots.operations`` and ``accounts.service``, which the API and CLI use too."""

from __future__ import annotations

from datetime import time

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TimeField,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from common.labels import LABELS

WEEKDAYS = [
    SelectChoice("1", _l("Mon")),
    SelectChoice("2", _l("Tue")),
    SelectChoice("3", _l("Wed")),
    SelectChoice("4", _l("Thu")),
    SelectChoice("5", _l("Fri")),
    SelectChoice("6", _l("Sat")),
    SelectChoice("7", _l("Sun")),
]


class PointForm(FlaskForm):
    """A market point's editable fields; ``market_id`` only when creating."""

    market_id = IntegerField(
        _l("Market number (the code becomes JKT-<number>)"),
        validators=[Optional(), NumberRange(1, 999_999)],
    )
    name = StringField(_l("Name"), validators=[DataRequired(), Length(2, 200)])
    address = StringField(_l("Address"), validators=[Length(max=300)])
    kecamatan = StringField(_l("Kecamatan"), validators=[Length(max=100)])
    kecamatan_code = StringField(_l("Kecamatan code (6 digits)"), validators=[Length(max=6)])
    city = StringField(_l("City"), validators=[Length(max=100)])
    safe_limit = IntegerField(
        _l("Safe limit (people inside at once)"), validators=[InputRequired(), NumberRange(1)]
    )
    timezone = StringField(_l("Timezone"), default="Asia/Jakarta", validators=[DataRequired()])
    opens_at = TimeField(_l("Opens"), validators=[Optional()])
    closes_at = TimeField(_l("Closes"), validators=[Optional()])
    household_limit = BooleanField(_l("Limit bookings per household (KK) too"))


class ImportForm(FlaskForm):
    """A CSV of market points in the shipped data's columns."""

    file = FileField(_l("CSV file"))


class ScheduleForm(FlaskForm):
    """A schedule template (see ``slots.models.Schedule``)."""

    point = SelectField(_l("Market point"), validators=[DataRequired()])
    name = StringField(_l("Name"), validators=[Length(max=100)])
    weekdays = SelectMultipleField(
        _l("Days"),
        choices=WEEKDAYS,
        default=["1", "2", "3", "4", "5"],
        option_widget=widgets.CheckboxInput(),
        widget=widgets.ListWidget(prefix_label=False),
    )
    # The demo markets' hours and the issue's "07:00 the day before" as a starting point.
    start_time = TimeField(
        _l("First slot starts"), default=time(7, 0), validators=[InputRequired()]
    )
    end_time = TimeField(_l("Last slot ends"), default=time(12, 0), validators=[InputRequired()])
    slot_minutes = IntegerField(
        _l("Slot length (minutes)"), default=30, validators=[InputRequired()]
    )
    capacity = IntegerField(_l("Places per slot"), default=20, validators=[InputRequired()])
    valid_from = DateField(_l("From"), validators=[InputRequired()])
    valid_until = DateField(_l("Until"), validators=[InputRequired()])
    publish_days_before = IntegerField(
        _l("Open for booking, days before"), default=1, validators=[InputRequired()]
    )
    publish_time = TimeField(
        _l("Open for booking at"), default=time(7, 0), validators=[InputRequired()]
    )


def in_day_range(form: FlaskForm, field: DateField) -> None:
    """A date field's value lies in the years 2000 to 2100, the API's and the CLI's
    range (``common.timeutil.parse_day``: far dates overflow the zone maths).

    Raises: wtforms' ValidationError, shown beside the field.
    """
    if field.data is not None and not 2000 <= field.data.year <= 2100:
        raise ValidationError(_l("Give a date between the years 2000 and 2100."))


class StockForm(FlaskForm):
    """A market point's stock on one local date (issue 15): packages on hand and how
    many one booking takes. The ranges are ``slots.stock.set_stock``'s; the date's is
    ``common.timeutil.parse_day``'s."""

    day = DateField(_l("Date"), validators=[InputRequired(), in_day_range])
    packages = IntegerField(
        _l("Packages on hand"), validators=[InputRequired(), NumberRange(0, 1_000_000)]
    )
    per_booking = IntegerField(
        _l("Packages per booking"), default=1, validators=[InputRequired(), NumberRange(1, 100)]
    )


class BallotForm(FlaskForm):
    """A ballot over a market point's slots on one local date (issue 16): the entry
    window's opening and closing, local times at the point."""

    day = DateField(_l("Date"), validators=[InputRequired(), in_day_range])
    opens = DateTimeLocalField(
        _l("Entries open (local time)"), format="%Y-%m-%dT%H:%M", validators=[InputRequired()]
    )
    closes = DateTimeLocalField(
        _l("Entries close, draw (local time)"),
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired()],
    )


class CapacityForm(FlaskForm):
    """A slot's new capacity."""

    capacity = IntegerField(_l("Capacity"), validators=[InputRequired()])


class MoveForm(FlaskForm):
    """Move a booking (by its code) to another slot (by its id)."""

    code = StringField(_l("Booking code"), validators=[DataRequired(), Length(max=20)])
    slot_id = IntegerField(_l("Target slot id"), validators=[InputRequired()])


class AccountForm(FlaskForm):
    """A new account."""

    email = StringField(_l("Email"), validators=[DataRequired(), Length(max=254)])
    role = SelectField(
        _l("Role"),
        choices=[SelectChoice(role, LABELS[role]) for role in ("staff", "supervisor", "admin")],
    )
    point = SelectField(_l("Market point (staff)"), validators=[Optional()])
    password = PasswordField(_l("Password (8 characters or more)"), validators=[DataRequired()])


class PasswordForm(FlaskForm):
    """A new password for an account."""

    password = PasswordField(_l("New password"), validators=[DataRequired()])


class AssignForm(FlaskForm):
    """An account's market point."""

    point = SelectField(_l("Market point"), validators=[Optional()])


def _year_2000_to_2100(form, field) -> None:
    """A date the zone arithmetic can hold (and that means something here)."""
    if field.data is not None and not 2000 <= field.data.year <= 2100:
        raise ValidationError(_l("Use a date between 2000 and 2100."))


class AuditFilterForm(FlaskForm):
    """Filters of the audit log page (GET, no CSRF)."""

    class Meta:
        csrf = False

    action = StringField(_l("Action starts with"), validators=[Optional(), Length(max=64)])
    actor = StringField(_l("Actor"), validators=[Optional(), Length(max=254)])
    since = DateField(_l("From"), validators=[Optional(), _year_2000_to_2100])
    until = DateField(_l("Until"), validators=[Optional(), _year_2000_to_2100])

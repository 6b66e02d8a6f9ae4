"""Residents without a smartphone or data: booking by SMS, USSD and WhatsApp (issue 17).

One conversation engine (``conversation``) and one keyword parser (``keywords``) over
the same booking services as the web (``actions``); ``sms``, ``ussd`` and
``whatsapp`` speak each gateway's protocol; ``replies`` holds every text. The staff
page that plays a conversation is this package's blueprint ``bp``.
"""

from flask import Blueprint

bp = Blueprint("channels", __name__, url_prefix="/staff/channels")

from channels import views  # noqa: E402,F401  (routes register on import)

"""Absolute links, always on the public address (issue 14 item 3).

A link that leaves the page (a ticket URL in a JSON answer, a WhatsApp share text, a
message to a resident, a printed ticket or calendar file) is built on
``PUBLIC_BASE_URL``, never on the request's ``Host`` header: a forged or internal host
name (a load balancer's, a container's port) must not end up in what residents keep.
Links inside a page stay relative (``url_for`` without ``_external``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app


def public_url(endpoint: str, **values: Any) -> str:
    """Return the absolute URL of ``endpoint`` on ``PUBLIC_BASE_URL``.

    Args: endpoint, a full endpoint name (``"qr.ticket"``, not ``".ticket"``); values,
      the rule's arguments (extra ones become the query string, as with ``url_for``).
    Returns: e.g. ``https://antri.example.id/tickets/CODE/KEY``; a path in the base URL
      (``https://example.id/antri``) is kept in front of the route's path.
    Raises: werkzeug.routing.BuildError for an unknown endpoint or missing argument.
    Needs an app context, not a request: jobs and the CLI build the same links.
    """
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    adapter = current_app.url_map.bind(
        base.netloc, script_name=base.path or "/", url_scheme=base.scheme
    )
    current_app.inject_url_defaults(endpoint, values)  # as url_for does
    return adapter.build(endpoint, values, force_external=True)

"""Under daphne, hand every request body to Django unparsed.

Twisted's ``http.Request`` parses each ``multipart/form-data`` and form-encoded POST body into
``request.args`` before daphne sees the request. daphne never reads ``args`` (it passes the raw
body to the ASGI app, and Django parses it), so that is a second in-memory copy of every upload,
and a multipart body Twisted cannot parse (e.g. one with no parts) gets a bare ``400`` with no
body from Twisted instead of the API's ``{"error": ...}`` answer from Django
(tests/reliability/test_schemathesis.py found it). Twisted has a switch for this:
``parsePOSTFormSubmission=False``.
"""

from __future__ import annotations

import sys
from typing import Any


def hand_bodies_to_django() -> bool:
    """Make daphne's request class skip Twisted's form parsing. A no-op (``False``) unless
    daphne is the server running this process (uvicorn never imports Twisted)."""
    if "daphne.server" not in sys.modules:
        return False
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "_bodies_to_django", False):
        return True
    original = WebRequest.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        original(self, *args, **kwargs)

    WebRequest.__init__ = __init__  # type: ignore[method-assign]
    WebRequest._bodies_to_django = True  # type: ignore[attr-defined]
    return True

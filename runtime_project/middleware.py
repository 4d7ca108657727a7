"""Security headers Django does not set itself.

Machine-readable responses (JSON, SSE, plain text, downloads) get a Content-Security-Policy that
forbids everything (``default-src 'none'; frame-ancestors 'none'``): if a browser is ever tricked
into rendering one as a page, no script, style or frame loads. HTML pages (admin, Swagger UI,
the console) keep the policies of their own views. Every response gets a ``Permissions-Policy``
that switches off powerful browser features nobody here uses (OWASP Secure Headers Project).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

LOCKED_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


def _decorate(response: Any) -> Any:
    content_type = response.get("Content-Type", "")
    if "Content-Security-Policy" not in response and not content_type.startswith("text/html"):
        response["Content-Security-Policy"] = LOCKED_CSP
    response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
    return response


class SecurityHeadersMiddleware:
    """Adds the headers above; works for sync and async (streaming SSE) views."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        return _decorate(self.get_response(request))

    async def _acall(self, request: Any) -> Any:
        return _decorate(await self.get_response(request))

"""What every console page shares: sign-in, the Content-Security-Policy and the page config.

Pages carry no inline script or style: the CSP allows scripts, styles and connections to this
origin only (``ws:``/``wss:`` to the same host are covered by ``'self'`` in CSP Level 3), images
from this origin, ``data:`` and ``blob:`` (rendered MIME bundles), and frames only as
``srcdoc`` documents, which the console sandboxes (HTML outputs). The per-page configuration
travels as JSON (``json_script``), read by the page's module.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy

CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-src 'self'; worker-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def console_render(
    request: HttpRequest,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    config: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """Render a console page with its CSP; ``config`` (JSON-serialisable) becomes the
    ``page-config`` JSON script the page's module reads."""
    response = render(
        request, template, {**(context or {}), "page_config": config or {}}, status=status
    )
    response["Content-Security-Policy"] = CONSOLE_CSP
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "same-origin"
    return response


class ConsoleLoginRequired(LoginRequiredMixin):
    """Signed-in users only; others go to the console's sign-in page and come back."""

    login_url = reverse_lazy("console:login")

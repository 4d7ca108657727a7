"""The browser runtime's page: ``/console/sessions/<id>/runtime/`` (docs/browser-runtime.md).

A signed-in user opens it for a session they may write to; the page
(``runtimes/static/runtimes/browser-runtime.js``) loads Pyodide from this server's static files,
attaches to the session over ``/ws/runtimes/`` with the user's session cookie, and runs the
session's ``python`` tasks in a Web Worker.

Headers: a Content-Security-Policy that allows nothing but this origin (no CDN, no inline
script), and cross-origin isolation (COOP ``same-origin`` comes from ``SecurityMiddleware``, COEP
``require-corp`` from here) so the page may share a ``SharedArrayBuffer`` with the worker to
interrupt a running cell.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.views import View

from runtime_project.exceptions import Forbidden, NotFound
from runtimes.protocol import PROTOCOL
from sessions.selectors import session_get

PYODIDE_STATIC = "vendor/pyodide/"  # node_modules/pyodide (STATICFILES_DIRS)
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


@method_decorator(login_required(login_url=reverse_lazy("oauth2_provider:login")), "dispatch")
class BrowserRuntimeView(View):
    """The page; sign-in with the session cookie (any active user: ``/o/login/``, not the
    staff-only admin login). 404 for a session the user may not run tasks on."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, session_id: Any) -> HttpResponse:
        try:
            session = session_get(user=request.user, session_id=session_id, for_write=True)
        except (NotFound, Forbidden):  # a viewer may not run the session's tasks either
            raise Http404("No such session.") from None
        config = {
            "session_id": str(session.uuid),
            "ws_path": "/ws/runtimes/",
            "protocol": PROTOCOL,
            "pyodide_index_url": static(PYODIDE_STATIC),
            "pyodide_installed": finders.find(PYODIDE_STATIC + "pyodide.mjs") is not None,
            "worker_url": static("runtimes/pyodide-worker.js"),
            "kernel_url": static("runtimes/pyodide_kernel.py"),
        }
        response = render(
            request,
            "runtimes/browser_runtime.html",
            {"session": session, "agent": session.agent, "config": config},
        )
        response["Content-Security-Policy"] = PAGE_CSP
        response["Cross-Origin-Embedder-Policy"] = "require-corp"
        response["Cache-Control"] = "no-store"
        return response

"""Django's ASGI handler, serving a synchronous view and the whole middleware stack in one
thread hop.

Under ASGI, Django runs its middleware chain in async mode, and each of the stock middlewares
(``MiddlewareMixin``: security, sessions, common, CSRF, authentication, messages, clickjacking,
Prometheus) hands its ``process_request`` and ``process_response`` to the request's thread
with ``sync_to_async``: about fifteen round trips between the event loop and that thread for
every request, before and after the one that runs the view. ``bench/request_path.py`` measures
both handlers side by side (``bench/RESULTS.md``, "request path": with one hop, a 404 took 0.43x
the server CPU and 0.70x the round trip of Django's handler).

:class:`ASGIHandler` builds Django's chain twice, once in each mode. A request whose view is a
plain function or a DRF ``APIView`` (nearly all of the API) runs the synchronous chain in a
single ``sync_to_async`` call on the request's thread-sensitive thread, exactly as under WSGI.
A request for an ``async def`` view (SSE streams, ``/oneshot``, ``/health``, the OpenAI,
ChatGPT and Alexa endpoints that wait for a task) keeps Django's async chain, so the view runs
on the event loop and does not hold a thread while it waits. Which chain serves a request
is decided by resolving its path first (``Resolver404``: the synchronous chain, which answers
404 or redirects to the slashed URL).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, get_resolver

from integrations.endpoints.domains import route_agent_host


class ASGIHandler(DjangoASGIHandler):
    """``django.core.handlers.asgi.ASGIHandler`` with a one-hop path for synchronous views
    (see the module docstring). Everything else (request parsing, signals, streaming the
    response, disconnects) is Django's."""

    def load_middleware(self, is_async: bool = False) -> None:
        # The synchronous chain lives in a handler of its own: a chain's view middleware
        # (``process_view``) is kept on the handler that built it, adapted to its mode.
        sync_handler = BaseHandler()
        sync_handler.load_middleware(is_async=False)
        self._sync_chain: Any = sync_handler._middleware_chain  # type: ignore[attr-defined]
        super().load_middleware(is_async=True)
        self._async_chain: Any = self._middleware_chain  # type: ignore[has-type]
        self._middleware_chain = self._serve

    async def _serve(self, request: HttpRequest) -> HttpResponseBase:
        if _view_is_async(request):
            response = await self._async_chain(request)
        else:
            response = await sync_to_async(self._sync_chain, thread_sensitive=True)(request)
        return response  # type: ignore[no-any-return]


def _view_is_async(request: HttpRequest) -> bool:
    """Whether the view ``request`` resolves to is an ``async def`` (the agent domains'
    urlconf applies as ``AgentDomainMiddleware`` will apply it; the call is idempotent)."""
    route_agent_host(request)
    urlconf: Any = getattr(request, "urlconf", None) or settings.ROOT_URLCONF
    try:
        match = get_resolver(urlconf).resolve(request.path_info)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)

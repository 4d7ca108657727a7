"""Agent host names: with ``AGENT_DOMAIN=agents.example.com`` the agent ``summarize`` answers
on ``https://summarize.agents.example.com`` with its endpoints at the root:

- ``POST /{endpoint}`` (and ``POST /run``), ``GET /endpoints``
- ``GET /openapi.json`` (servers and paths for that host), ``GET /docs/`` (Swagger UI)
- everything else falls through to the normal URLs (e.g. the ``Location``
  ``/api/v1/tasks/{id}`` of a 202), so one credential works on both host names.

Setup (the lead wires it): put :class:`AgentDomainMiddleware` in ``MIDDLEWARE`` before
``CommonMiddleware`` (whose slash redirect reads ``request.urlconf``), and accept the agent hosts
in ``ALLOWED_HOSTS`` with ``".<AGENT_DOMAIN>"`` (a leading dot matches every subdomain). A
wildcard DNS record and TLS certificate (``*.agents.example.com``) point at the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

AGENT_URLCONF = "integrations.endpoints.agent_urls"


def agent_slug_for_host(host: str, domain: str) -> str | None:
    """``"summarize.agents.example.com:8443"`` with domain ``"agents.example.com"`` →
    ``"summarize"``; None for the bare domain, deeper names (``a.b.<domain>``) or other hosts."""
    if not domain:
        return None
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower().rstrip(".")
    suffix = "." + domain.lower()
    if not name.endswith(suffix):
        return None
    label = name[: -len(suffix)]
    if not label or "." in label:
        return None
    return label


def route_agent_host(request: HttpRequest) -> None:
    """Set ``request.agent_slug`` and ``request.urlconf`` when the request is for an agent host
    (a host not in ``ALLOWED_HOSTS`` is left alone: Django answers 400 for it as usual)."""
    domain = getattr(settings, "AGENT_DOMAIN", "")
    if not domain:
        return
    try:
        host = request.get_host()
    except DisallowedHost:
        return
    slug = agent_slug_for_host(host, domain)
    if slug:
        request.agent_slug = slug  # type: ignore[attr-defined]
        request.urlconf = AGENT_URLCONF  # type: ignore[attr-defined]


class AgentDomainMiddleware:
    """Route ``<slug>.<AGENT_DOMAIN>`` requests to the agent's endpoint views (sync and async;
    it does no I/O)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        route_agent_host(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        route_agent_host(request)
        response: Awaitable[HttpResponseBase] = self.get_response(request)
        return await response

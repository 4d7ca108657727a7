"""Server modes: which URL modules and WebSocket consumers this process serves.

``SERVER_MODE`` (settings_integrations.py) selects modules; a feature is served when its module
is and its own ``*_ENABLED`` flag (if any) is on:

=============  ===================================================================================
module         features
=============  ===================================================================================
``core``       always: ``/health``, accounts (teams, API keys, secrets), OAuth2 (``/o/``),
               the API schema and docs, the admin (unless ``ADMIN_PORT`` moves it)
``agent``      agents, sessions, tasks, events (REST, SSE, WebSocket), workspace, sharing,
               providers, schedules, webhooks, OAuth connections
``runtime``    remote runtimes (``/ws/runtimes/``, ``/api/v1/sessions/{id}/runtime``, the
               browser runtime page)
``debugger``   step traces and the debugger API
``embodiment`` the OpenAI-compatible API, MCP, ChatGPT actions, Alexa, agent endpoints with their
               per-agent docs, Postman collections
=============  ===================================================================================

``all`` (the default) serves every module. A process that does not serve a feature answers its
URLs with 404 (and closes its WebSockets with 4404) but can still *build* them
(``reverse()`` works), so a response of one module may link to another served elsewhere. The
idea follows SmythOS's runtime, whose agent runner, debugger and embodiments can be deployed
apart behind one router.

Routing headers (issue 10, 4b; docs/server-modes.md): ``X-FORCE-DEBUGGER: true`` asks that the
debugger module serve the request, ``X-FORCE-AGENT-RUNNER: true`` the agent module (a plain,
non-debug run). A process serving the forced module also serves the *run-starting* routes
(:data:`RUN_ROUTES`, ``POST`` only) of the modules it does not serve — a ``debugger`` process
runs ``POST /v1/chat/completions`` as a debug run — while their own ``*_ENABLED`` flags still
apply; a process not serving it answers ``421 module_not_served`` so a router can send the
request elsewhere. Both headers at once: ``400 conflicting_headers``. Core routes ignore them.
What the headers do to the run itself (``config.debug``) is ``debugger.headers``'.

``ADMIN_PORT`` (optional): the admin is served only on that port, and that port serves nothing
but the admin, its static files and ``/health`` (the server listens on both;
``runtime_project/serve.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import import_module
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.urls import URLPattern, URLResolver, include

from runtime_project.exceptions import ApplicationError, InvalidInput, error_body

MODULES = ("core", "agent", "runtime", "debugger", "embodiment")
MODES: dict[str, tuple[str, ...]] = {
    "all": MODULES,
    "agent": ("core", "agent"),
    "runtime": ("core", "runtime"),
    "debugger": ("core", "debugger"),
    "embodiment": ("core", "embodiment"),
}

# feature → (module, the setting that switches it off, or None)
FEATURES: dict[str, tuple[str, str | None]] = {
    "accounts": ("core", None),
    "admin": ("core", None),
    "sessions": ("agent", None),
    "providers": ("agent", None),
    "schedules": ("agent", None),
    "console": ("agent", None),
    "webhooks": ("agent", "WEBHOOKS_ENABLED"),
    "connections": ("agent", "OAUTH_CONNECTIONS_ENABLED"),
    "runtimes": ("runtime", None),
    "debugger": ("debugger", None),
    "openai": ("embodiment", "OPENAI_API_ENABLED"),
    "mcp": ("embodiment", "MCP_ENABLED"),
    "chatgpt": ("embodiment", "CHATGPT_ENABLED"),
    "alexa": ("embodiment", "ALEXA_ENABLED"),
    "endpoints": ("embodiment", "AGENT_ENDPOINTS_ENABLED"),
    "postman": ("embodiment", "POSTMAN_ENABLED"),
}


def served_modules() -> tuple[str, ...]:
    """The modules ``SERVER_MODE`` serves, ``core`` first."""
    return MODES[settings.SERVER_MODE]


def serves(feature: str) -> bool:
    """Whether this process serves ``feature`` (a key of :data:`FEATURES`); read per request,
    so ``override_settings`` in tests takes effect without reloading URLconfs.

    Raises:
        KeyError: an unknown feature name (a programming error).
    """
    module, flag = FEATURES[feature]
    if module not in served_modules():
        return False
    return flag is None or bool(getattr(settings, flag, True))


def modules_status() -> dict[str, Any]:
    """For ``/health``: the mode, the modules served and every feature's state."""
    return {
        "server_mode": settings.SERVER_MODE,
        "modules": list(served_modules()),
        "features": {name: serves(name) for name in FEATURES},
        "admin_port": settings.ADMIN_PORT,
    }


# Routing headers (4b) → the module they force.
FORCE_HEADERS = {"X-Force-Debugger": "debugger", "X-Force-Agent-Runner": "agent"}
# ``namespace:name`` of the URLs whose POST starts a run: the routes a process serving a forced
# module serves although their own module is not served here.
RUN_ROUTES = frozenset(
    {
        "sessions_api:session-tasks", "sessions_api:session-messages", "sessions_api:oneshot",
        "openai:chat-completions", "openai:responses", "agent_endpoints:call", "chatgpt:run",
        "alexa:endpoint",
    }
)  # fmt: skip


def forced_module(headers: Any) -> str | None:
    """The module a request's routing header forces (``debugger``, ``agent``), or None.

    Raises:
        InvalidInput: ``conflicting_headers`` (both headers), or a value that is not a boolean.
    """
    from debugger.headers import header_flag  # the one parser of the debug headers

    forced = [module for name, module in FORCE_HEADERS.items() if header_flag(headers, name)]
    if len(forced) > 1:
        raise InvalidInput(
            "Send X-FORCE-DEBUGGER or X-FORCE-AGENT-RUNNER, not both.", code="conflicting_headers"
        )
    return forced[0] if forced else None


def _refusal(request: Any, feature: str, starts_run: bool) -> HttpResponse | None:
    """None when this process serves ``request`` (for ``feature``'s view), else the answer:
    a 421/400 response for the routing headers, or ``Http404`` raised (Django's handler renders
    it in the error shape)."""
    module, flag = FEATURES[feature]
    try:
        forced = forced_module(request.headers) if module != "core" else None
    except ApplicationError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status_code)
    if forced is not None:
        mode = settings.SERVER_MODE
        if forced not in served_modules():
            message = f"The {forced} module is not served by this process (mode {mode})."
            details = {"module": forced, "mode": mode}
            return JsonResponse(error_body("module_not_served", message, details), status=421)
        if (
            starts_run
            and request.method == "POST"
            and module in ("agent", "embodiment")
            and (flag is None or bool(getattr(settings, flag, True)))
        ):
            return None
    if not serves(feature):
        raise Http404("Not served by this server mode.")
    return None


def _gate(view: Callable[..., Any], feature: str, starts_run: bool = False) -> Callable[..., Any]:
    """``view`` answering 404 while ``feature`` is not served (unless a routing header forces
    a module served here and ``starts_run``; see :func:`_refusal`). ``functools.wraps`` keeps
    the attributes DRF, drf-spectacular and CSRF read (``cls``, ``initkwargs``,
    ``csrf_exempt``)."""
    if iscoroutinefunction(view):

        async def gated_async(request: Any, *args: Any, **kwargs: Any) -> Any:
            refused = _refusal(request, feature, starts_run)
            if refused is not None:
                return refused
            return await view(request, *args, **kwargs)

        wrapped: Callable[..., Any] = functools.wraps(view)(gated_async)
        markcoroutinefunction(wrapped)
    else:

        def gated(request: Any, *args: Any, **kwargs: Any) -> Any:
            refused = _refusal(request, feature, starts_run)
            if refused is not None:
                return refused
            return view(request, *args, **kwargs)

        wrapped = functools.wraps(view)(gated)
    wrapped.server_feature = feature  # type: ignore[attr-defined]
    return wrapped


def _wrap(patterns: list[Any], feature: str, namespace: str | None = None) -> list[Any]:
    out: list[Any] = []
    for entry in patterns:
        if isinstance(entry, URLPattern):
            starts_run = f"{namespace}:{entry.name}" in RUN_ROUTES
            out.append(
                URLPattern(
                    entry.pattern,
                    _gate(entry.callback, feature, starts_run),
                    entry.default_args,
                    entry.name,
                )
            )
        elif isinstance(entry, URLResolver):
            out.append(
                URLResolver(
                    entry.pattern,
                    _wrap(list(entry.url_patterns), feature, entry.namespace or namespace),
                    entry.default_kwargs,
                    entry.app_name,
                    entry.namespace,
                )
            )
        else:  # pragma: no cover - Django has no third kind
            out.append(entry)
    return out


def feature_include(feature: str, urlconf: str) -> tuple[Any, str | None, str | None]:
    """``include(urlconf)`` whose views answer 404 unless ``feature`` is served (names and
    namespaces are kept, so ``reverse()`` works in every mode)."""
    module = import_module(urlconf)
    app_name = getattr(module, "app_name", None)
    patterns = _wrap(list(module.urlpatterns), feature, app_name)
    return include((patterns, app_name) if app_name else patterns)


def drop_unserved_operations(endpoints: list[Any], **_: Any) -> list[Any]:
    """drf-spectacular preprocessing hook: the schema lists only the operations served."""
    return [
        (path, regex, method, callback)
        for path, regex, method, callback in endpoints
        if serves(getattr(callback, "server_feature", "accounts"))
    ]


def gated_consumer(app: Any, feature: str) -> Any:
    """The ASGI WebSocket ``app``, closing with 4404 unless ``feature`` is served (typed
    ``Any`` like Channels' ``as_asgi()``, for ``path()``)."""

    async def consumer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if serves(feature):
            await app(scope, receive, send)
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 4404})

    return consumer


def admin_port_allows(scope: dict[str, Any]) -> bool:
    """With ``ADMIN_PORT`` set: that port serves only ``/admin/``, ``/static/`` and
    ``/health``, and the other ports never serve ``/admin/``. ``scope["server"]`` is the
    listening ``(host, port)`` (ASGI spec)."""
    admin_port = settings.ADMIN_PORT
    if not admin_port:
        return True
    server = scope.get("server") or (None, None)
    path = scope.get("path", "")
    is_admin_path = path.startswith("/admin/") or path == "/admin"
    static = "/" + str(settings.STATIC_URL).lstrip("/")
    if server[1] == admin_port:
        return scope["type"] == "http" and (
            is_admin_path or path.startswith(static) or path == "/health"
        )
    return not is_admin_path

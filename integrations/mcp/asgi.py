"""``/mcp``: the MCP Streamable HTTP endpoint, served inside the project's ASGI app
(``runtime_project/asgi.py`` routes ``/mcp`` and ``/mcp/*`` here when ``MCP_ENABLED``).

The MCP SDK's session manager needs a long-lived task group, which Starlette would open in the
ASGI lifespan. Daphne has no lifespan (research/stack.md §3), so :class:`_Lifecycle` starts
the manager on the first request, in a task of its own, and stops it before the Twisted
reactor shuts down: without that, a daphne that served MCP ignores SIGTERM. Under uvicorn
the lifespan calls :func:`mcp_shutdown`.

``/mcp`` bypasses Django's handler and middleware, so each request is checked here before the
SDK sees it:

1. the path is ``/mcp`` or ``/mcp/`` (anything else under ``/mcp/`` is a 404);
2. ``Host`` is in ``ALLOWED_HOSTS`` (Django's own check, 400) and an ``Origin``, when sent,
   is this server's or allowed by ``CORS_ALLOWED_ORIGINS`` (403): the DNS-rebinding defence
   (the SDK's own, which only knows localhost, is off);
3. CORS: preflights and response headers for the origins of ``CORS_ALLOWED_ORIGINS``;
4. ``Authorization: Bearer <API key or OAuth2 access token>``
   (``accounts.authentication.resolve_bearer``): missing or unusable → 401 with
   ``WWW-Authenticate: Bearer resource_metadata="<base>/.well-known/oauth-protected-resource/mcp"``
   (RFC 9728 §5.1, where MCP clients discover the OAuth2 server); a credential without the
   ``tasks:write`` scope → 403 ``insufficient_scope``.

The caller then travels in the ASGI scope: the Django user for the handlers
(``integrations.mcp.server``), and as the SDK's ``scope["user"]`` a principal made of the
credential (``api_key:<prefix>``, ``oauth2:<client id>``) and the user id: the SDK binds
each MCP session to the principal that created it and answers 404 to any other. Errors are
``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import sys
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.urls import reverse
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from oauth2_provider.settings import oauth2_settings

from accounts import access
from accounts.models import Scope
from integrations.mcp.server import (
    CLOSED_KEY,
    REQUEST_KEY,
    USER_KEY,
    build_server,
    server_stopping,
)

logger = logging.getLogger(__name__)

REQUIRED_SCOPE = Scope.TASKS_WRITE
"""Scope a credential needs for ``/mcp`` (listing and running agents; ``admin`` has it)."""

_ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
_CORS_HEADERS = "authorization, content-type, accept, mcp-session-id, mcp-protocol-version"
_EXPOSE_HEADERS = "mcp-session-id, mcp-protocol-version, www-authenticate"


def is_mcp_path(path: str) -> bool:
    """Whether an HTTP request for ``path`` belongs to the MCP endpoint."""
    return path == "/mcp" or path.startswith("/mcp/")


def mcp_enabled() -> bool:
    """Whether this process serves ``/mcp`` (``SERVER_MODE`` and ``MCP_ENABLED``; see
    runtime_project/modes.py)."""
    from runtime_project.modes import serves

    return serves("mcp")


class _Lifecycle:
    """The SDK's session manager, started on first use and stopped at shutdown (once)."""

    def __init__(self) -> None:
        self.manager: StreamableHTTPSessionManager | None = None
        self.stopping = False
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Future[None] | None = None
        self._stop: asyncio.Event | None = None

    async def ensure_started(self) -> StreamableHTTPSessionManager | None:
        """The running manager; ``None`` once shutdown began."""
        if self.manager is not None or self.stopping:
            return self.manager
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.manager is None and not self.stopping:
                manager = _new_manager()
                ready, self._stop = asyncio.Event(), asyncio.Event()
                self._task = asyncio.ensure_future(self._run(manager, ready, self._stop))
                waiter = asyncio.ensure_future(ready.wait())
                await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not ready.is_set():  # run() failed: surface its error to this request
                    self._task.result()
                self.manager = manager
                _before_reactor_shutdown(self.stop)
        return self.manager

    @staticmethod
    async def _run(
        manager: StreamableHTTPSessionManager, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        async with manager.run():
            ready.set()
            await stop.wait()

    async def stop(self) -> None:
        """End every MCP session; calls still in flight are cut short (their tasks are left to
        the executor's shutdown, which runs first under daphne)."""
        self.stopping = True
        server_stopping()
        if self._task is None or self._stop is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=15)
        except Exception:
            logger.warning("The MCP session manager did not stop cleanly.", exc_info=True)
        self.manager = None


def _new_manager() -> StreamableHTTPSessionManager:
    max_sessions = int(settings.MCP_MAX_SESSIONS)
    return StreamableHTTPSessionManager(
        app=build_server(),
        # Host and Origin are checked by mcp_asgi_app against the Django settings.
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        session_idle_timeout=float(settings.MCP_SESSION_IDLE_TIMEOUT_S),
        max_sessions=max_sessions if max_sessions > 0 else None,
    )


def _before_reactor_shutdown(stop: Any) -> None:
    """Under daphne, stop the manager before the reactor shuts down (research/stack.md §3)."""
    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import defer, reactor

    def trigger() -> Any:
        return defer.Deferred.fromFuture(asyncio.ensure_future(stop()))

    reactor.addSystemEventTrigger("before", "shutdown", trigger)  # type: ignore[attr-defined,arg-type]


_lifecycle = _Lifecycle()


async def mcp_shutdown() -> None:
    """Stop the MCP sessions (ASGI lifespan shutdown; daphne does it by itself)."""
    await _lifecycle.stop()


async def mcp_asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI app of ``/mcp`` (HTTP scopes only)."""
    if scope.get("type") != "http" or scope.get("path") not in ("/mcp", "/mcp/"):
        await _error(send, 404, "not_found", "Not found.")
        return
    request = ASGIRequest(scope, io.BytesIO())  # headers only: the body stays with the SDK
    try:
        host = request.get_host()
    except DisallowedHost:
        await _error(send, 400, "bad_request", "Invalid Host header.")
        return
    origin = request.headers.get("origin")
    cors = bool(origin) and _cors_allowed(str(origin))
    if origin and not cors and origin != f"{request.scheme}://{host}":
        await _error(send, 403, "forbidden_origin", "This origin may not call /mcp.")
        return
    if cors:
        send = _with_cors(send, str(origin))
    if request.method == "OPTIONS":
        await _preflight(send, request, cors)
        return

    parts = request.headers.get("authorization", "").split()
    if len(parts) != 2 or parts[0].lower() not in ("bearer", "token"):
        await _unauthorized(send, request, "not_authenticated", "A bearer credential is needed.")
        return
    from accounts.authentication import CredentialError, resolve_bearer

    try:
        credential = await database_sync_to_async(resolve_bearer)(parts[1])
    except CredentialError as error:
        await _unauthorized(send, request, error.code, error.message, invalid=True)
        return
    user = credential.user
    if not access.has_scope(user, REQUIRED_SCOPE):
        challenge = (
            f'{_challenge(request)}, error="insufficient_scope", scope="{REQUIRED_SCOPE.value}"'
        )
        await _error(
            send,
            403,
            "insufficient_scope",
            f"This credential lacks the '{REQUIRED_SCOPE.value}' scope.",
            details={"required_scope": REQUIRED_SCOPE.value},
            headers=[(b"www-authenticate", challenge.encode())],
        )
        return
    request.user = user

    manager = await _lifecycle.ensure_started()
    if manager is None:
        await _error(send, 503, "shutting_down", "The server is shutting down.")
        return
    principal = AccessToken(
        token="",  # never the credential: the SDK only compares principals
        client_id=access.credential_label(user),
        scopes=sorted(getattr(user, "credential_scopes", None) or []),
        subject=str(user.pk),
    )
    closed = asyncio.Event()
    inner = {
        **scope,
        "user": AuthenticatedUser(principal),
        USER_KEY: user,
        REQUEST_KEY: request,
        CLOSED_KEY: closed,
    }
    try:
        await manager.handle_request(inner, receive, send)
    finally:
        closed.set()


def _cors_allowed(origin: str) -> bool:
    if getattr(settings, "CORS_ALLOW_ALL_ORIGINS", False):
        return True
    if origin in getattr(settings, "CORS_ALLOWED_ORIGINS", []):
        return True
    return any(re.match(p, origin) for p in getattr(settings, "CORS_ALLOWED_ORIGIN_REGEXES", []))


def _with_cors(send: Any, origin: str) -> Any:
    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or [])
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-expose-headers", _EXPOSE_HEADERS.encode()),
                (b"vary", b"Origin"),
            ]
            message = {**message, "headers": headers}
        await send(message)

    return sending


async def _preflight(send: Any, request: ASGIRequest, cors: bool) -> None:
    headers = [(b"allow", _ALLOW_METHODS.encode())]
    if cors:
        # The client may mirror tool arguments into Mcp-Param-* headers: allow what it asks.
        asked = request.headers.get("access-control-request-headers") or _CORS_HEADERS
        max_age = str(getattr(settings, "CORS_PREFLIGHT_MAX_AGE", 600))
        headers += [
            (b"access-control-allow-methods", _ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", asked.encode("latin-1")),
            (b"access-control-max-age", max_age.encode()),
        ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def resource_metadata_url(request: ASGIRequest) -> str:
    """RFC 9728 metadata of the ``/mcp`` resource (``…/.well-known/oauth-protected-resource/mcp``,
    served by ``accounts.oauth``), absolute, on ``OAUTH2_ISSUER`` when set."""
    path = reverse("oauth2_provider:oauth-resource-metadata-path", args=["mcp"])
    issuer = oauth2_settings.OIDC_ISS_ENDPOINT
    return f"{issuer}{path}" if issuer else request.build_absolute_uri(path)


def _challenge(request: ASGIRequest) -> str:
    return f'Bearer realm="mcp", resource_metadata="{resource_metadata_url(request)}"'


async def _unauthorized(
    send: Any, request: ASGIRequest, code: str, message: str, *, invalid: bool = False
) -> None:
    challenge = _challenge(request)
    if invalid:  # RFC 6750 §3.1: a credential was sent but is unusable
        challenge += f', error="invalid_token", error_description="{message}"'
    await _error(send, 401, code, message, headers=[(b"www-authenticate", challenge.encode())])


async def _error(
    send: Any,
    status: int,
    code: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": details or {}}})
    with contextlib.suppress(OSError):
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})

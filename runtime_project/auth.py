"""Token authentication for REST (``Authorization: Bearer|Token <key>``) and WebSocket
(the same header, or a ``token.<key>`` subprotocol, since browsers cannot set WS headers).

Tokens are DRF's ``authtoken`` keys (one per user; created by ``manage.py create_user_token``).
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

WS_TOKEN_SUBPROTOCOL_PREFIX = "token."  # noqa: S105 - a prefix, not a secret


class BearerTokenAuthentication(TokenAuthentication):
    """Accept ``Authorization: Bearer <key>`` as well as DRF's ``Token <key>``.

    The header is parsed here rather than through DRF's ``get_authorization_header`` so both
    keywords work; errors are DRF's (401 with a ``WWW-Authenticate: Bearer`` challenge).
    """

    keyword = "Bearer"
    keywords = frozenset({"bearer", "token"})

    def authenticate(self, request: Any) -> Any:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        parts = header.split()
        if not parts or parts[0].lower() not in self.keywords:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid token header: expected 'Bearer <key>' with no spaces in the key."
            )
        return self.authenticate_credentials(parts[1])


def user_for_token(key: str) -> Any:
    """The active user owning ``key``, or ``AnonymousUser``."""
    try:
        token = Token.objects.select_related("user").get(key=key)
    except Token.DoesNotExist:
        return AnonymousUser()
    return token.user if token.user.is_active else AnonymousUser()


def token_from_scope(scope: dict[str, Any]) -> str | None:
    """Extract a token from a WebSocket scope: the Authorization header, else a subprotocol."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            parts = value.decode("latin-1").split(None, 1)
            if len(parts) == 2 and parts[0].lower() in {"bearer", "token"}:
                return parts[1].strip()
    for proto in scope.get("subprotocols", []) or []:
        if proto.startswith(WS_TOKEN_SUBPROTOCOL_PREFIX):
            return proto[len(WS_TOKEN_SUBPROTOCOL_PREFIX) :]
    return None


class TokenAuthMiddleware:
    """ASGI middleware for WebSocket scopes: a valid token overrides the session-cookie user."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = token_from_scope(scope)
        if key:
            scope = dict(scope, user=await database_sync_to_async(user_for_token)(key))
        return await self.inner(scope, receive, send)


class BrowserOriginValidator(OriginValidator):
    """Cross-site WebSocket hijacking guard that lets non-browser clients in.

    Browsers always send ``Origin`` on a WebSocket handshake, so a present ``Origin`` must match
    ``ALLOWED_HOSTS`` (Channels' ``AllowedHostsOriginValidator`` rule) or one of
    ``CSRF_TRUSTED_ORIGINS`` / ``CORS_ALLOWED_ORIGINS``. A missing ``Origin`` means a program
    (SDK, CLI, ``websockets``), which cannot ride a victim's cookies and must present a token or
    cookie of its own, so Channels' "no Origin, no entry" rule is relaxed for it.
    """

    def __init__(self, application: Any) -> None:
        allowed = [*settings.ALLOWED_HOSTS, *settings.CSRF_TRUSTED_ORIGINS]
        allowed += list(getattr(settings, "CORS_ALLOWED_ORIGINS", []))
        super().__init__(application, allowed)

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))

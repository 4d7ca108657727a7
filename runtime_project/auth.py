"""Token authentication for REST (``Authorization: Bearer|Token <key>``) and WebSocket
(the same header, or a ``token.<key>`` subprotocol, since browsers cannot set WS headers).

Tokens are DRF's ``authtoken`` keys (one per user; created by ``manage.py create_user_token``).
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

WS_TOKEN_SUBPROTOCOL_PREFIX = "token."  # noqa: S105 - a prefix, not a secret


class BearerTokenAuthentication(TokenAuthentication):
    """Accept ``Authorization: Bearer <key>`` as well as DRF's ``Token <key>``."""

    keyword = "Bearer"

    def authenticate(self, request: Any) -> Any:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header[:6].lower() == "token ":
            request.META["HTTP_AUTHORIZATION"] = "Bearer " + header[6:]
        return super().authenticate(request)


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

"""Bearer authentication for REST and SSE (``Authorization: Bearer|Token <credential>``) and
WebSocket (the same header, or a ``token.<credential>`` subprotocol, since browsers cannot set
WS headers). A credential is an API key or an OAuth2 access token (``accounts.authentication``).
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from runtime_project.db import db_call

WS_TOKEN_SUBPROTOCOL_PREFIX = "token."  # noqa: S105 - a prefix, not a secret


class CredentialFailed(exceptions.AuthenticationFailed):
    """401 whose error code says why the credential was refused (e.g. ``api_key_revoked``)."""

    def __init__(self, error: Any) -> None:
        super().__init__(error.message, code=error.code)
        self.error_code = error.code


class BearerTokenAuthentication(BaseAuthentication):
    """Accept ``Authorization: Bearer <credential>`` (and ``Token <credential>``).

    Errors are 401 with a ``WWW-Authenticate: Bearer`` challenge.
    """

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
                "Invalid authorization header: expected 'Bearer <credential>'."
            )
        # Imported here: DRF loads this class while ``rest_framework.views`` is still importing,
        # before the accounts models can be.
        from accounts.authentication import CredentialError, resolve_bearer

        try:
            credential = resolve_bearer(parts[1])
        except CredentialError as error:
            raise CredentialFailed(error) from None
        return credential.user, credential.record

    def authenticate_header(self, request: Any) -> str:
        return bearer_challenge(request)


def bearer_challenge(request: Any) -> str:
    """The ``WWW-Authenticate`` value of a 401: names the RFC 9728 protected-resource metadata,
    where OAuth2 clients (MCP clients first) discover the authorization server."""
    from accounts.oauth import resource_metadata_url

    return f'Bearer realm="api", resource_metadata="{resource_metadata_url(request)}"'


def user_for_token(key: str) -> Any:
    """The user a credential resolves to (its restrictions bound), or ``AnonymousUser``."""
    from accounts.authentication import CredentialError, resolve_bearer

    try:
        return resolve_bearer(key).user
    except CredentialError:
        return AnonymousUser()


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
            scope = dict(scope, user=await db_call(user_for_token)(key))
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

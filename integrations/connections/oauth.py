"""The OAuth2 client side of connections, with Authlib, over the outbound guard.

Authlib does the protocol: the authorization URL with ``state`` and the PKCE S256
``code_challenge`` (RFC 7636), the code exchange, the refresh (RFC 6749 §6), the revocation
(RFC 7009), client authentication at the token endpoint and the parsing of token responses and
errors. Its HTTP goes through :class:`OutboundTransport`, an httpx transport that sends each
request with ``runtime_project.outbound.fetch``: only http(s), every address the host resolves
to public (or allowed by ``OUTBOUND_ALLOWED_HOSTS`` / ``OAUTH_CONNECTIONS_ALLOWED_HOSTS``), the
connection pinned to the checked address, and no redirect followed (a token endpoint answering
with a redirect is an error, so a POST carrying a code or a secret is never replayed elsewhere).

Errors are :class:`ProviderError` (502 ``oauth_provider_error``, details ``{"error",
"description"?, "status"?}``), ``OutboundRefused`` (400) or ``OutboundFailed`` (502). None of
them carries the client secret, a code, a verifier or a token: the provider's own error
description is masked against those values and cut short.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

# The httpx flavour Authlib's clients are built on (httpx2 when installed, else httpx): the
# transport must be of the same library.
from authlib.integrations.httpx_client._compat import httpx2 as _httpx
from authlib.oauth2.client import OAuth2Client as _UrlBuilder
from django.conf import settings

from integrations.connections.models import OAuthProvider, TokenAuthMethod
from runtime_project import outbound
from runtime_project.exceptions import ApplicationError
from sessions.services.masking import Masker

MAX_RESPONSE_BYTES = 256 * 1024  # a token or userinfo response; more is not a token response
DESCRIPTION_CHARS = 200
_DROP_RESPONSE = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_DROP_REQUEST = frozenset({"host", "content-length"})
# Names an extra authorize parameter may not take: the flow sets them.
RESERVED_PARAMS = frozenset(
    {"response_type", "client_id", "redirect_uri", "state", "scope", "code_challenge",
     "code_challenge_method"}
)  # fmt: skip


class ProviderError(ApplicationError):
    """The provider's endpoint refused or answered something that is not a token response."""

    status_code = 502
    code = "oauth_provider_error"


@dataclass(frozen=True)
class TokenSet:
    """A token response: ``expires_at`` None when the provider gave no lifetime, ``scopes``
    None when it did not say (then the scopes asked for were granted, RFC 6749 §5.1)."""

    access_token: str = ""
    refresh_token: str = ""
    token_type: str = "Bearer"  # noqa: S105 (a token type)
    expires_at: dt.datetime | None = None
    scopes: list[str] | None = None


class OutboundTransport(_httpx.AsyncBaseTransport):
    """Sends Authlib's requests with ``outbound.fetch`` (see the module docstring)."""

    async def handle_async_request(self, request: Any) -> Any:
        body = await request.aread()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
        result = await outbound.fetch(
            str(request.url),
            method=request.method,
            headers=headers,
            body=body or None,
            max_bytes=MAX_RESPONSE_BYTES,
            timeout_s=float(settings.OAUTH_CONNECTIONS_HTTP_TIMEOUT_S),
            max_redirects=0,
            allow_hosts=list(settings.OAUTH_CONNECTIONS_ALLOWED_HOSTS),
        )
        kept = [(k, v) for k, v in result.headers.items() if k not in _DROP_RESPONSE]
        return _httpx.Response(result.status, headers=kept, content=result.body, request=request)


def _auth_method(provider: OAuthProvider, secret: str) -> str:
    return provider.token_endpoint_auth_method if secret else TokenAuthMethod.NONE


def authorization_url(
    provider: OAuthProvider, *, redirect_uri: str, state: str, code_verifier: str | None
) -> str:
    """The provider's authorize URL for this flow: ``response_type=code``, ``client_id``,
    ``redirect_uri``, ``scope`` (space-separated), ``state``, with ``code_verifier`` the
    S256 ``code_challenge`` (PKCE), and the provider's extra authorize parameters."""
    builder = _UrlBuilder(
        session=None,
        client_id=provider.client_id,
        redirect_uri=redirect_uri,
        code_challenge_method="S256" if code_verifier else None,
    )
    extra = {k: str(v) for k, v in (provider.authorize_params or {}).items()}
    extra = {k: v for k, v in extra.items() if k not in RESERVED_PARAMS}
    scope = " ".join(provider.scopes or []) or None
    url, _ = builder.create_authorization_url(
        provider.authorize_url, state=state, code_verifier=code_verifier, scope=scope, **extra
    )
    return str(url)


def _client(provider: OAuthProvider, secret: str) -> AsyncOAuth2Client:
    method = _auth_method(provider, secret)
    return AsyncOAuth2Client(
        client_id=provider.client_id,
        client_secret=secret or None,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        transport=OutboundTransport(),
        trust_env=False,
    )


def _token_set(token: dict[str, Any]) -> TokenSet:
    """A :class:`TokenSet` of Authlib's ``OAuth2Token`` (which computed ``expires_at``)."""
    if not isinstance(token.get("access_token"), str) or not token["access_token"]:
        raise ProviderError(
            "The provider's token response has no access_token.",
            details={"error": "invalid_token_response"},
        )
    expires_at = token.get("expires_at")
    scope = token.get("scope")
    return TokenSet(
        access_token=token["access_token"],
        refresh_token=str(token.get("refresh_token") or ""),
        token_type=str(token.get("token_type") or "Bearer")[:40],
        expires_at=(
            dt.datetime.fromtimestamp(expires_at, tz=dt.UTC)
            if isinstance(expires_at, int | float)
            else None
        ),
        scopes=scope.split() if isinstance(scope, str) else None,
    )


def _translate(exc: Exception, what: str, secrets: dict[str, str]) -> ApplicationError:
    """``exc`` (Authlib or httpx) as a :class:`ProviderError` saying nothing secret."""
    masker = Masker(secrets)
    if isinstance(exc, OAuthError):
        error = masker.mask(str(exc.error or "error"))[:80]
        details: dict[str, Any] = {"error": error}
        if exc.description:
            details["description"] = masker.mask(str(exc.description))[:DESCRIPTION_CHARS]
        return ProviderError(f"The provider refused the {what}: {error}.", details=details)
    if isinstance(exc, _httpx.HTTPStatusError):
        status = exc.response.status_code
        return ProviderError(
            f"The provider's {what} endpoint answered HTTP {status}.",
            details={"error": "http_error", "status": status},
        )
    return ProviderError(
        f"The provider's {what} endpoint did not answer with a token response.",
        details={"error": "invalid_token_response"},
    )


async def exchange_code(
    provider: OAuthProvider, *, secret: str, code: str, redirect_uri: str, code_verifier: str | None
) -> TokenSet:
    """Exchange an authorization ``code`` at the token endpoint (with the PKCE verifier).

    Raises:
        ProviderError, OutboundRefused, OutboundFailed: see the module docstring.
    """
    extra = {"code_verifier": code_verifier} if code_verifier else {}
    hidden = {"client_secret": secret, "code": code, "verifier": code_verifier or ""}
    async with _client(provider, secret) as client:
        try:
            token = await client.fetch_token(
                provider.token_url,
                grant_type="authorization_code",
                code=code,
                redirect_uri=redirect_uri,
                **extra,
            )
        except (OAuthError, _httpx.HTTPStatusError, ValueError) as exc:
            raise _translate(exc, "code exchange", hidden) from None
    return _token_set(token)


async def refresh(provider: OAuthProvider, *, secret: str, refresh_token: str) -> TokenSet:
    """A new token from ``refresh_token`` (RFC 6749 §6). ``refresh_token`` of the result is
    the provider's new refresh token, or ``""`` when it kept the old one valid.

    Raises:
        ProviderError (e.g. ``details.error == "invalid_grant"``: the grant was revoked or
        expired), OutboundRefused, OutboundFailed.
    """
    hidden = {"client_secret": secret, "refresh_token": refresh_token}
    async with _client(provider, secret) as client:
        try:
            # Authlib puts the old refresh token into its result when the response has none.
            token = dict(
                await client.refresh_token(provider.token_url, refresh_token=refresh_token)
            )
        except (OAuthError, _httpx.HTTPStatusError, ValueError) as exc:
            raise _translate(exc, "refresh", hidden) from None
    result = _token_set(token)
    if result.refresh_token == refresh_token:
        result = TokenSet(**{**result.__dict__, "refresh_token": ""})
    return result


async def revoke(provider: OAuthProvider, *, secret: str, token: str, hint: str) -> None:
    """Revoke ``token`` (``hint``: ``refresh_token`` or ``access_token``) at the provider's
    RFC 7009 endpoint. A provider answers 200 even for an unknown token.

    Raises:
        ProviderError (not 200), OutboundRefused, OutboundFailed.
    """
    async with _client(provider, secret) as client:
        response = await client.revoke_token(provider.revoke_url, token=token, token_type_hint=hint)
    if response.status_code != 200:
        raise ProviderError(
            f"The provider's revocation endpoint answered HTTP {response.status_code}.",
            details={"error": "http_error", "status": response.status_code},
        )


async def userinfo_account(provider: OAuthProvider, *, access_token: str) -> str:
    """Who the token belongs to at the provider, from its userinfo endpoint: the first of
    ``preferred_username``, ``login``, ``username``, ``email``, ``name``, ``sub`` in its JSON
    object; ``""`` when there is no endpoint or it gives none of them.

    Raises:
        ProviderError (not 200 or not JSON), OutboundRefused, OutboundFailed.
    """
    if not provider.userinfo_url:
        return ""
    result = await outbound.fetch(
        provider.userinfo_url,
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        max_bytes=MAX_RESPONSE_BYTES,
        timeout_s=float(settings.OAUTH_CONNECTIONS_HTTP_TIMEOUT_S),
        max_redirects=0,
        allow_hosts=list(settings.OAUTH_CONNECTIONS_ALLOWED_HOSTS),
    )
    if result.status != 200:
        raise ProviderError(
            f"The provider's userinfo endpoint answered HTTP {result.status}.",
            details={"error": "http_error", "status": result.status},
        )
    try:
        data = _httpx.Response(200, content=result.body).json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderError(
            "The provider's userinfo endpoint did not answer with a JSON object.",
            details={"error": "invalid_userinfo"},
        )
    for key in ("preferred_username", "login", "username", "email", "name", "sub"):
        if isinstance(data.get(key), str | int) and str(data[key]):
            return str(data[key])[:200]
    return ""

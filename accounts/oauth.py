"""OAuth2 discovery documents: RFC 8414 authorization-server and RFC 9728 protected-resource
metadata, the JSON that MCP and ChatGPT clients read before starting an OAuth2 flow.

The authorization server is django-oauth-toolkit mounted at ``/o/`` (``accounts/oauth_urls.py``;
settings ``OAUTH2_PROVIDER``): authorization code with PKCE (RFC 7636, ``S256`` only), client
credentials and refresh tokens. The protected resource is this server's API (REST, SSE,
WebSocket, ``/mcp``), which accepts the access tokens as ``Authorization: Bearer``
(``accounts/authentication.py``).

- ``GET /.well-known/oauth-authorization-server`` (RFC 8414 §3): the issuer, the endpoints, the
  scopes, the grant and response types, ``S256``, the client authentication methods per endpoint.
- ``GET /.well-known/oauth-protected-resource[/<path>]`` (RFC 9728 §3): the resource identifier
  (``<issuer>`` or ``<issuer>/<path>``, e.g. ``/mcp``), its authorization server, the scopes and
  ``bearer_methods_supported: ["header"]``.

The issuer is ``OAUTH2_ISSUER`` when set (behind a proxy that rewrites the host or scheme),
else the request's scheme and host. Both documents are public (no authentication, any origin
may read them) and built by django-oauth-toolkit's views; these subclasses pin what this server
advertises where DOT's settings are shared between endpoints.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.views import LoginView
from django.http import HttpRequest, JsonResponse
from django.urls import NoReverseMatch, reverse, reverse_lazy
from django.views.decorators.cache import cache_control
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import (
    AuthorizationView,
    OAuthProtectedResourceMetadataView,
    OAuthServerMetadataView,
)

# Client authentication (RFC 8414 §2, the IANA "OAuth Token Endpoint Authentication Methods"):
# confidential clients send their secret (HTTP Basic or in the form body); public clients
# (PKCE, RFC 7636) send only their client_id ("none"), at the token and revocation endpoints.
# Introspection (RFC 7662 §2.1) always needs an authenticated (confidential) client.
_CONFIDENTIAL_AUTH = ["client_secret_basic", "client_secret_post"]
_PUBLIC_AUTH = [*_CONFIDENTIAL_AUTH, "none"]

_MAX_AGE_S = 300  # clients may cache the documents briefly


class Login(LoginView):
    """``/o/login/``: username and password for any active user (the admin login at
    ``LOGIN_URL`` only lets staff in), then back to the consent page (``next``, same host only).
    """

    template_name = "oauth2_provider/login.html"
    redirect_authenticated_user = True


class Authorize(AuthorizationView):
    """DOT's authorization endpoint (RFC 6749 §3.1; PKCE is required, RFC 7636 §4.4) whose
    consent page (``templates/oauth2_provider/authorize.html``) lists each requested scope with
    its description (``scope_items``). Anonymous users are sent to :class:`Login` first."""

    login_url = reverse_lazy("oauth2_provider:login")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        scopes = context.get("scopes") or []
        descriptions = context.get("scopes_descriptions") or []
        context["scope_items"] = list(zip(scopes, descriptions, strict=False))
        return context


def _metadata(response: JsonResponse, **overrides: Any) -> JsonResponse:
    """``response`` (a DOT metadata document) with ``overrides`` applied to its JSON."""
    data = json.loads(response.content)
    data.update(overrides)
    fresh = JsonResponse(data)
    fresh["Access-Control-Allow-Origin"] = "*"
    return fresh


def _api_docs_url(request: HttpRequest) -> str | None:
    try:
        path = reverse("swagger-ui")
    except NoReverseMatch:
        return None
    issuer = oauth2_settings.OIDC_ISS_ENDPOINT
    return f"{issuer}{path}" if issuer else request.build_absolute_uri(path)


class AuthorizationServerMetadata(OAuthServerMetadataView):
    """RFC 8414 authorization-server metadata (``/.well-known/oauth-authorization-server``).

    On top of DOT's document: per-endpoint client authentication methods (``none`` for public
    clients at the token and revocation endpoints, never at introspection), ``S256`` as the only
    PKCE method (RFC 7636 §4.2; ``plain`` is refused, RFC 9700 §2.1.1) and the API docs as
    ``service_documentation``.
    """

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        overrides: dict[str, Any] = {
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": _PUBLIC_AUTH,
            "revocation_endpoint_auth_methods_supported": _PUBLIC_AUTH,
            "introspection_endpoint_auth_methods_supported": _CONFIDENTIAL_AUTH,
        }
        docs = _api_docs_url(request)
        if docs:
            overrides["service_documentation"] = docs
        return _metadata(super().get(request, *args, **kwargs), **overrides)


class ProtectedResourceMetadata(OAuthProtectedResourceMetadataView):
    """RFC 9728 protected-resource metadata (``/.well-known/oauth-protected-resource``, and
    ``/.well-known/oauth-protected-resource/<path>`` for the resource ``<issuer>/<path>``,
    RFC 9728 §3.1, which is how an MCP client asks about ``/mcp``)."""

    def get_resource(self, request: HttpRequest) -> str:
        issuer = oauth2_settings.OIDC_ISS_ENDPOINT
        if not issuer:
            return super().get_resource(request)
        _, _, path = request.path.partition("/.well-known/oauth-protected-resource")
        path = path.strip("/")
        return f"{issuer}/{path}" if path else issuer

    def get_resource_documentation(self) -> str:
        return oauth2_settings.OAUTH2_PROTECTED_RESOURCE_DOCUMENTATION or (
            _api_docs_url(self.request) or ""
        )


authorization_server_metadata = cache_control(public=True, max_age=_MAX_AGE_S)(
    AuthorizationServerMetadata.as_view()
)
protected_resource_metadata = cache_control(public=True, max_age=_MAX_AGE_S)(
    ProtectedResourceMetadata.as_view()
)


def resource_metadata_url(request: HttpRequest) -> str:
    """Absolute URL of the RFC 9728 document, for a ``WWW-Authenticate: Bearer
    resource_metadata="..."`` challenge (RFC 9728 §5.1; MCP clients start from it)."""
    path = reverse("oauth2_provider:oauth-resource-metadata")
    issuer = oauth2_settings.OIDC_ISS_ENDPOINT
    return f"{issuer}{path}" if issuer else request.build_absolute_uri(path)

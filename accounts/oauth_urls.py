"""OAuth2 routes (django-oauth-toolkit), mounted at the server root by ``runtime_project/urls.py``.

- ``/o/authorize/`` (``accounts.oauth.Authorize``), ``/o/token/``, ``/o/revoke_token/``
  (RFC 7009), ``/o/introspect/`` (RFC 7662): django-oauth-toolkit's views. Its
  application-management, device-flow, OIDC and dynamic client registration views are not
  served: applications are registered in the Django admin or with
  ``manage.py create_oauth_app``.
- ``/o/login/``: sign-in for the consent page (any active user; the admin login is staff-only).
- POSTs to login, token, revocation and introspection are rate limited per client IP
  (``THROTTLE_OAUTH``, ``runtime_project.throttling.ip_rate_limited``).
- ``/.well-known/oauth-authorization-server`` (RFC 8414) and
  ``/.well-known/oauth-protected-resource[/<path>]`` (RFC 9728): ``accounts/oauth.py``.

The namespace is DOT's (``oauth2_provider``), so its views and the metadata documents find
these endpoints by name.
"""

from __future__ import annotations

from django.urls import path
from oauth2_provider import views as dot

from accounts.oauth import (
    Authorize,
    Login,
    authorization_server_metadata,
    protected_resource_metadata,
)
from runtime_project.throttling import ip_rate_limited

app_name = "oauth2_provider"

urlpatterns = [
    path("o/login/", ip_rate_limited(Login.as_view()), name="login"),
    path("o/authorize/", Authorize.as_view(), name="authorize"),
    path("o/token/", ip_rate_limited(dot.TokenView.as_view()), name="token"),
    path("o/revoke_token/", ip_rate_limited(dot.RevokeTokenView.as_view()), name="revoke-token"),
    path("o/introspect/", ip_rate_limited(dot.IntrospectTokenView.as_view()), name="introspect"),
    path(
        ".well-known/oauth-authorization-server",
        authorization_server_metadata,
        name="oauth-server-metadata",
    ),
    path(
        ".well-known/oauth-protected-resource",
        protected_resource_metadata,
        name="oauth-resource-metadata",
    ),
    path(
        ".well-known/oauth-protected-resource/<path:resource_path>",
        protected_resource_metadata,
        name="oauth-resource-metadata-path",
    ),
]

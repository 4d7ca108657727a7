"""OpenAPI description of our bearer authentication (drf-spectacular extension, loaded by
``AccountsConfig.ready``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerCredentialScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """``tokenAuth``: ``Authorization: Bearer <API key or OAuth2 access token>``."""

    target_class = "runtime_project.auth.BearerTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An API key (`<prefix>.<secret>`, created under /api/v1/api-keys) or an OAuth2 "
                "access token (see /.well-known/oauth-authorization-server). `Token <key>` is "
                "accepted too."
            ),
        }

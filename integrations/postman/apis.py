"""Postman collections to download: the whole REST API, and one agent's endpoints.

``GET /api/v1/postman.json`` is public, like ``/api/schema/`` it is built from (the same
drf-spectacular permission and authentication settings apply: anonymous callers get it, a bad
credential is still a 401). ``GET /api/v1/agents/{agent_id}/postman.json`` needs ``agents:read``
and an agent the caller can read (``sessions.selectors.agent_get``). Both answer
``Content-Disposition: attachment; filename="<name>.postman_collection.json"``; with
``POSTMAN_ENABLED=false`` (or a ``SERVER_MODE`` without ``embodiment``) both are 404.
docs/integrations/postman.md has the user's side.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import AUTHENTICATION_CLASSES
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from integrations.endpoints.openapi import agent_openapi
from integrations.postman.convert import collection_from_openapi
from runtime_project.api import error_responses
from runtime_project.modes import modules_status
from sessions import selectors
from sessions.apis.common import AGENT_ID

TAGS = ["postman"]
_schema_lock = threading.Lock()
_schema_cache: dict[str, Any] = {}


def api_openapi() -> dict[str, Any]:
    """The server's OpenAPI document (what ``/api/schema/?format=json`` serves), as plain JSON
    values. Generated once per process (per set of served features, which decide the
    operations listed): it takes most of a second and only changes with the code."""
    key = repr(sorted(modules_status()["features"].items()))
    with _schema_lock:
        if key not in _schema_cache:
            generator = spectacular_settings.DEFAULT_GENERATOR_CLASS()
            schema = generator.get_schema(request=None, public=spectacular_settings.SERVE_PUBLIC)
            # The renderer turns lazy translations and other Python values into JSON ones.
            _schema_cache[key] = json.loads(OpenApiJsonRenderer().render(schema))
        return _schema_cache[key]  # type: ignore[no-any-return]


def clear_cache() -> None:
    """Forget the cached OpenAPI document (tests that change the URL conf)."""
    with _schema_lock:
        _schema_cache.clear()


def base_url(request: Request) -> str:
    """``scheme://host`` of the request, as the client reached the server."""
    return request.build_absolute_uri("/").rstrip("/")


def attachment(collection: dict[str, Any]) -> Response:
    """``collection`` as a download named after it (characters unsafe in a file name → ``_``)."""
    name = re.sub(r"[^A-Za-z0-9._ -]+", "_", collection["info"]["name"]).strip(" .") or "api"
    return Response(
        collection,
        headers={"Content-Disposition": f'attachment; filename="{name}.postman_collection.json"'},
    )


class _PostmanApi(APIView):
    # POSTMAN_ENABLED=false and server modes without "embodiment" answer 404 before this view
    # runs (runtime_project/modes.py gates the whole URL module).
    renderer_classes = [JSONRenderer]


class ApiCollectionApi(_PostmanApi):
    # Mirrors drf-spectacular's SpectacularAPIView (/api/schema/): same audience, same data.
    permission_classes = spectacular_settings.SERVE_PERMISSIONS
    authentication_classes = AUTHENTICATION_CLASSES

    @extend_schema(
        operation_id="postman_collection_retrieve",
        summary="Download the API as a Postman collection",
        description=(
            "A Postman Collection v2.1 of every REST operation, one folder per tag, with "
            "example bodies and responses; `{{baseUrl}}` is this server and requests "
            "authenticate with the `{{apiKey}}` collection variable (bearer). Import it in "
            "Postman or run it with Newman. Public, like `/api/schema/`."
        ),
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The collection (attachment)"),
            **{s: r for s, r in error_responses().items() if s in (401, 429)},
        },
        # A credential is optional ({}), but a bad one is a 401. drf-spectacular types `auth`
        # as list[str] and writes the requirement objects it is given as they are.
        auth=[{"tokenAuth": []}, {"cookieAuth": []}, {}],  # type: ignore[list-item]
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        schema = api_openapi()
        name = str(spectacular_settings.TITLE or "API")
        return attachment(collection_from_openapi(schema, name=name, base_url=base_url(request)))


class AgentCollectionApi(_PostmanApi):
    required_scope = Scope.AGENTS_READ

    @extend_schema(
        operation_id="agents_postman_collection_retrieve",
        summary="Download an agent's endpoints as a Postman collection",
        description=(
            "A Postman Collection v2.1 of the agent's endpoints (`POST /api/agents/{slug}/"
            "{endpoint}`, and `run`), with example bodies from their input schemas. Calling "
            "them needs a credential with `tasks:write`."
        ),
        parameters=[AGENT_ID],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The collection (attachment)"),
            **error_responses(404),
        },
        tags=TAGS,
    )
    def get(self, request: Request, agent_id: str) -> Response:
        agent = selectors.agent_get(user=request.user, agent_id=agent_id)
        url = base_url(request)
        schema = agent_openapi(agent, base_url=url)
        name = str((schema.get("info") or {}).get("title") or agent.name or agent.slug)
        return attachment(collection_from_openapi(schema, name=name, base_url=url))

"""REST of OAuth connections: a team's providers (``/api/v1/oauth-providers``) and the caller's
own connections (``/api/v1/connections``). Thin views: serializers check shapes, services and
selectors do the work. No response holds a client secret, a token or their ciphertext.

Providers: team members read them (scope ``agents:read``), admins register, change and delete
them (scope ``admin``, role admin or owner: a lower role gets 403, a stranger 404).
Connections: each user lists (``agents:read``) and revokes (``admin``) only their own.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Scope
from accounts.selectors import team_for_write
from integrations.connections import selectors, services
from integrations.connections.models import ConnectionStatus, TokenAuthMethod
from runtime_project.api import Pagination, error_responses
from runtime_project.exceptions import InvalidInput
from sessions.apis.common import TeamRefSerializer, paginated_response, uuid_path

TAGS = ["connections"]
PROVIDER_ID = uuid_path("provider_id", "OAuth provider")
CONNECTION_ID = uuid_path("connection_id", "connection")
WRITE_ONLY_HELP = (
    "The client secret this server authenticates with at the token endpoint. Write-only: "
    "stored encrypted, never returned (`has_client_secret` tells whether there is one); empty "
    "for a public client."
)


class ProviderOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    name = serializers.SlugField(help_text="Referenced by agent specs as the connection name.")
    team = TeamRefSerializer()
    client_id = serializers.CharField()
    has_client_secret = serializers.SerializerMethodField()
    authorize_url = serializers.URLField()
    token_url = serializers.URLField()
    userinfo_url = serializers.CharField(allow_blank=True)
    revoke_url = serializers.CharField(allow_blank=True)
    scopes = serializers.ListField(child=serializers.CharField())
    authorize_params = serializers.DictField(child=serializers.CharField())
    use_pkce = serializers.BooleanField()
    token_endpoint_auth_method = serializers.ChoiceField(choices=TokenAuthMethod.choices)
    api_hosts = serializers.ListField(
        child=serializers.CharField(),
        help_text="Hosts its tokens may be sent to (empty: the token URL's host).",
    )
    connect_url = serializers.SerializerMethodField(
        help_text="Open it in a signed-in browser to connect your account."
    )
    redirect_uri = serializers.SerializerMethodField(
        help_text="The callback to register at the provider for this client."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "OAuthProvider"

    def get_has_client_secret(self, obj: Any) -> bool:
        return bool(obj.client_secret)

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_connect_url(self, obj: Any) -> str:
        path = reverse("connections:connect", args=[obj.name])
        return self._absolute(f"{path}?team={obj.team.slug}")

    def get_redirect_uri(self, obj: Any) -> str:
        from django.conf import settings

        path = reverse("connections:callback", args=[obj.name])
        base = settings.OAUTH_CONNECTIONS_REDIRECT_BASE_URL.rstrip("/")
        return base + path if base else self._absolute(path)


class _ProviderFields(serializers.Serializer):
    """The editable fields (all optional here; the create view requires some)."""

    client_id = serializers.CharField(required=False, max_length=255)
    client_secret = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, write_only=True,
        help_text=WRITE_ONLY_HELP,
    )  # fmt: skip
    authorize_url = serializers.CharField(required=False, max_length=2000)
    token_url = serializers.CharField(required=False, max_length=2000)
    userinfo_url = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    revoke_url = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, help_text="RFC 7009 endpoint."
    )
    scopes = serializers.ListField(child=serializers.CharField(), required=False)
    authorize_params = serializers.DictField(required=False)
    use_pkce = serializers.BooleanField(required=False)
    token_endpoint_auth_method = serializers.ChoiceField(
        choices=TokenAuthMethod.choices, required=False
    )
    api_hosts = serializers.ListField(child=serializers.CharField(), required=False)


class ProviderCreateInputSerializer(_ProviderFields):
    name = serializers.SlugField(max_length=64)
    client_id = serializers.CharField(max_length=255)
    authorize_url = serializers.CharField(max_length=2000)
    token_url = serializers.CharField(max_length=2000)
    team = serializers.CharField(
        required=False,
        help_text="Team (UUID or slug); default: the API key's team, else your personal team. "
        "You need the admin role there.",
    )

    class Meta:
        ref_name = "OAuthProviderCreateInput"


class ProviderUpdateInputSerializer(_ProviderFields):
    class Meta:
        ref_name = "OAuthProviderUpdateInput"


class ProviderListApi(APIView):
    required_scope = Scope.AGENTS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="oauth_providers_list",
        summary="List OAuth providers",
        description="Your teams' OAuth providers (client secrets never shown).",
        responses={200: ProviderOutputSerializer(many=True), **error_responses()},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            queryset=selectors.provider_list(user=request.user),
            serializer_class=ProviderOutputSerializer,
            request=request,
            view=self,
        )


class ProviderCreateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="oauth_providers_create",
        summary="Register an OAuth provider",
        description=(
            "Registers an OAuth2 authorization server and this server's client there for a "
            "team (admins). Register `redirect_uri` of the response at the provider; users "
            "then connect at `connect_url`, and the team's agents use the connection by "
            "`name`. A taken name is a 409 `oauth_provider_name_taken`."
        ),
        request=ProviderCreateInputSerializer,
        responses={201: ProviderOutputSerializer, **error_responses(400, 403, 404, 409)},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        serializer = ProviderCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        team = team_for_write(
            user=request.user, team_id=data.pop("team", None), min_role=selectors.WRITE_ROLE
        )
        provider = services.provider_create(
            user=request.user, team=team, name=data.pop("name"), **data
        )
        output = ProviderOutputSerializer(provider, context={"request": request})
        return Response(output.data, status=status.HTTP_201_CREATED)


class ProviderDetailApi(APIView):
    required_scope = Scope.AGENTS_READ

    @extend_schema(
        operation_id="oauth_providers_retrieve",
        summary="Get an OAuth provider",
        parameters=[PROVIDER_ID],
        responses={200: ProviderOutputSerializer, **error_responses(404)},
        tags=TAGS,
    )
    def get(self, request: Request, provider_id: str) -> Response:
        provider = selectors.provider_get(user=request.user, provider_id=provider_id)
        return Response(ProviderOutputSerializer(provider, context={"request": request}).data)


class ProviderUpdateApi(APIView):
    required_scope = Scope.ADMIN
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="oauth_providers_partial_update",
        summary="Change an OAuth provider",
        description=(
            'Change any field but `name` and `team` (`client_secret: ""` makes it a public '
            "client). Team admins only."
        ),
        parameters=[PROVIDER_ID],
        request=ProviderUpdateInputSerializer,
        responses={200: ProviderOutputSerializer, **error_responses(400, 403, 404, 409)},
        tags=TAGS,
    )
    def patch(self, request: Request, provider_id: str) -> Response:
        provider = selectors.provider_get(
            user=request.user, provider_id=provider_id, for_write=True
        )
        data = request.data if isinstance(request.data, dict) else {}
        unknown = sorted(set(data) - set(ProviderUpdateInputSerializer().fields))
        if unknown:
            message = f"{unknown[0]} cannot be changed."
            raise InvalidInput(message, details={"fields": {unknown[0]: [message]}})
        serializer = ProviderUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        provider = services.provider_update(
            provider=provider, changes=dict(serializer.validated_data)
        )
        return Response(ProviderOutputSerializer(provider, context={"request": request}).data)


class ProviderDeleteApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="oauth_providers_destroy",
        summary="Delete an OAuth provider",
        description="Deletes it and every user's connection to it. Team admins only.",
        parameters=[PROVIDER_ID],
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(403, 404)},
        tags=TAGS,
    )
    def delete(self, request: Request, provider_id: str) -> Response:
        provider = selectors.provider_get(
            user=request.user, provider_id=provider_id, for_write=True
        )
        services.provider_delete(provider=provider)
        return Response(status=status.HTTP_204_NO_CONTENT)


class _ProviderRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    name = serializers.SlugField()
    team = TeamRefSerializer()

    class Meta:
        ref_name = "OAuthProviderRef"


class ConnectionOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    provider = _ProviderRefSerializer()
    status = serializers.ChoiceField(choices=ConnectionStatus.choices)
    account = serializers.CharField(help_text="Who you are at the provider, when known.")
    scopes = serializers.ListField(child=serializers.CharField(), help_text="Scopes granted.")
    token_type = serializers.CharField()
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When the access token expires (it is refreshed then)."
    )
    last_error = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    refreshed_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "OAuthConnection"


class ConnectionListApi(APIView):
    required_scope = Scope.AGENTS_READ
    pagination_class = Pagination

    @extend_schema(
        operation_id="connections_list",
        summary="List your connections",
        description="Your own OAuth connections (tokens never shown).",
        responses={200: ConnectionOutputSerializer(many=True), **error_responses()},
        tags=TAGS,
    )
    def get(self, request: Request) -> Response:
        return paginated_response(
            queryset=selectors.connection_list(user=request.user),
            serializer_class=ConnectionOutputSerializer,
            request=request,
            view=self,
        )


class ConnectionRevokeApi(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="connections_destroy",
        summary="Revoke a connection",
        description=(
            "Revokes the grant at the provider (RFC 7009, when it has a `revoke_url`) and "
            "deletes the stored tokens; the connection stays listed as `revoked` until you "
            "connect again. Your own connections only."
        ),
        parameters=[CONNECTION_ID],
        responses={204: OpenApiResponse(description="Revoked"), **error_responses(404)},
        tags=TAGS,
    )
    def delete(self, request: Request, connection_id: str) -> Response:
        connection = selectors.connection_get(user=request.user, connection_id=connection_id)
        services.connection_revoke(connection=connection)
        return Response(status=status.HTTP_204_NO_CONTENT)

"""Django admin for OAuth providers and connections. Secrets are never displayed: the client
secret is write-only (a password field that sets a new one), the tokens are not shown at all
(only whether there is one), and connections can be revoked (tokens deleted, the provider's
revocation endpoint called) but not edited."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from integrations.connections import services
from integrations.connections.models import OAuthConnection, OAuthProvider
from providers import crypto
from runtime_project.exceptions import InvalidInput


class ProviderAdminForm(forms.ModelForm):
    """The model's fields plus ``new_client_secret`` (empty keeps the stored one)."""

    new_client_secret = forms.CharField(
        label="New client secret",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: stored encrypted, never shown again. Empty keeps the current one.",
    )
    clear_client_secret = forms.BooleanField(
        required=False, help_text="Make it a public client (PKCE only, no secret)."
    )

    class Meta:
        model = OAuthProvider
        fields = (
            "team", "name", "client_id", "authorize_url", "token_url", "userinfo_url",
            "revoke_url", "scopes", "authorize_params", "use_pkce",
            "token_endpoint_auth_method", "api_hosts",
        )  # fmt: skip

    def clean(self) -> dict[str, Any]:
        """The service's checks for the URLs, the list and object fields and the secret."""
        cleaned = super().clean() or {}
        checked = ("authorize_url", "token_url", "userinfo_url", "revoke_url", "scopes",
                   "authorize_params", "api_hosts", "new_client_secret")  # fmt: skip
        for field in checked:
            value = cleaned.get(field)
            if value in (None, "") or field in self.errors:
                continue
            target = "client_secret" if field == "new_client_secret" else field
            try:
                cleaned[field] = services.clean_field(target, value)
            except InvalidInput as exc:
                self.add_error(field, exc.message)
        return cleaned


@admin.register(OAuthProvider)
class OAuthProviderAdmin(admin.ModelAdmin):
    form = ProviderAdminForm
    list_display = ("name", "team", "client_id", "has_secret", "use_pkce", "updated_at")
    list_select_related = ("team",)
    search_fields = ("name", "uuid", "client_id", "team__slug")
    raw_id_fields = ("team",)
    readonly_fields = ("uuid", "created_by", "has_secret", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("uuid", "team", "name", "created_by")}),
        ("Client", {"fields": ("client_id", "has_secret", "new_client_secret",
                               "clear_client_secret", "token_endpoint_auth_method", "use_pkce")}),
        ("Endpoints", {"fields": ("authorize_url", "token_url", "userinfo_url", "revoke_url",
                                  "scopes", "authorize_params", "api_hosts")}),
        ("Times", {"fields": ("created_at", "updated_at")}),
    )  # fmt: skip

    @admin.display(boolean=True, description="Client secret")
    def has_secret(self, obj: OAuthProvider) -> bool:
        return bool(obj.client_secret)

    def save_model(self, request: HttpRequest, obj: OAuthProvider, form: Any, change: bool) -> None:
        """Encrypt a new secret before saving; record who registered it."""
        if form.cleaned_data.get("clear_client_secret"):
            obj.client_secret = ""
        elif form.cleaned_data.get("new_client_secret"):
            obj.client_secret = crypto.encrypt(form.cleaned_data["new_client_secret"])
        if not change and request.user.is_authenticated:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(OAuthConnection)
class OAuthConnectionAdmin(admin.ModelAdmin):
    list_display = ("provider", "user", "status", "account", "expires_at", "updated_at")
    list_filter = ("status",)
    list_select_related = ("provider", "user")
    search_fields = ("uuid", "provider__name", "user__username", "account")
    actions = ("revoke",)
    fields = (
        "uuid", "provider", "user", "status", "account", "has_access_token",
        "has_refresh_token", "token_type", "scopes", "expires_at", "last_error",
        "created_at", "updated_at", "refreshed_at", "last_used_at",
    )  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # connections come from the user's consent, nowhere else

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(boolean=True, description="Access token")
    def has_access_token(self, obj: OAuthConnection) -> bool:
        return bool(obj.access_token)

    @admin.display(boolean=True, description="Refresh token")
    def has_refresh_token(self, obj: OAuthConnection) -> bool:
        return bool(obj.refresh_token)

    @admin.action(description="Revoke the selected connections")
    def revoke(self, request: HttpRequest, queryset: QuerySet[OAuthConnection]) -> None:
        count = 0
        for connection in queryset.select_related("provider"):
            services.connection_revoke(connection=connection)
            count += 1
        self.message_user(request, f"Revoked {count} connection(s).", messages.SUCCESS)

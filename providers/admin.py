"""Django admin for stored provider credentials: list and search them; the secret is
write-only (a password field that sets a new secret; pages show ``hint`` only, never the secret
or its ciphertext)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from providers.models import ProviderCredential
from providers.services import clean_secret, set_secret
from runtime_project.exceptions import InvalidInput


class CredentialAdminForm(forms.ModelForm):
    """The model's fields plus ``new_secret`` (required when adding, optional when changing:
    empty keeps the stored secret)."""

    new_secret = forms.CharField(
        label="New secret",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: stored encrypted, never shown again. Empty keeps the current one.",
    )

    class Meta:
        model = ProviderCredential
        fields = ("owner", "name", "provider", "agent")

    def clean_new_secret(self) -> str:
        raw = self.cleaned_data.get("new_secret") or ""
        if not raw and self.instance.pk is not None:
            return ""
        try:
            return clean_secret(raw)
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        owner, agent = cleaned.get("owner"), cleaned.get("agent")
        if owner is not None and agent is not None and agent.owner_id != owner.pk:
            self.add_error("agent", "The agent must belong to the credential's owner.")
        return cleaned


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = CredentialAdminForm
    list_display = ("name", "provider", "owner", "agent", "hint", "last_used_at", "updated_at")
    list_filter = ("provider",)
    list_select_related = ("owner", "agent")
    search_fields = ("name", "uuid", "owner__username", "agent__slug")
    raw_id_fields = ("owner", "agent")
    readonly_fields = ("uuid", "hint", "created_at", "updated_at", "last_used_at")
    fieldsets = (
        (None, {"fields": ("uuid", "owner", "name", "provider", "agent")}),
        ("Secret", {"fields": ("hint", "new_secret")}),
        ("Times", {"fields": ("created_at", "updated_at", "last_used_at")}),
    )

    def save_model(
        self, request: HttpRequest, obj: ProviderCredential, form: Any, change: bool
    ) -> None:
        """Encrypt a new secret (through the service helper) before saving."""
        if form.cleaned_data.get("new_secret"):
            set_secret(obj, form.cleaned_data["new_secret"])
        super().save_model(request, obj, form, change)

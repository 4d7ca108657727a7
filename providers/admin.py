"""Django admin for stored provider credentials: list and search them (with their team); the
secret is write-only (a password field that sets a new secret; pages show ``hint`` only, never
the secret or its ciphertext). The form checks that the agent restriction is an agent of the
credential's team and that the owner is a member of it.

Team model access (``TeamModelAccess``): which models a team may use, editable here too (the
list is checked like the REST API's ``PUT /api/v1/teams/{id}/models``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from accounts.models import Membership
from providers.access import clean_allowed_models
from providers.models import ProviderCredential, TeamModelAccess
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
        fields = ("owner", "team", "name", "provider", "agent")

    def clean_new_secret(self) -> str:
        raw = self.cleaned_data.get("new_secret") or ""
        if not raw and self.instance.pk is not None:
            return ""
        try:
            return clean_secret(raw)
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self) -> dict[str, Any]:
        """The agent must be a live agent of the team; a new owner or team needs the owner to
        be a member of the team (an owner who left later does not block other edits)."""
        cleaned = super().clean() or {}
        owner, team, agent = cleaned.get("owner"), cleaned.get("team"), cleaned.get("agent")
        if team is not None and agent is not None:
            if agent.team_id != team.pk:
                self.add_error("agent", "The agent must belong to the credential's team.")
            elif agent.deleted_at is not None:
                self.add_error("agent", "The agent is deleted.")
        changed = {"owner", "team"} & set(self.changed_data)
        if (
            owner is not None
            and team is not None
            and changed
            and not Membership.objects.filter(team=team, user=owner).exists()
        ):
            self.add_error("owner", "The owner must be a member of the team.")
        return cleaned


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = CredentialAdminForm
    list_display = (
        "name", "provider", "team", "owner", "agent", "hint", "last_used_at", "updated_at",
    )  # fmt: skip
    list_filter = ("provider",)
    list_select_related = ("team", "owner", "agent")
    search_fields = ("name", "uuid", "team__slug", "owner__username", "agent__slug")
    raw_id_fields = ("team", "owner", "agent")
    readonly_fields = ("uuid", "hint", "created_at", "updated_at", "last_used_at")
    fieldsets = (
        (None, {"fields": ("uuid", "team", "owner", "name", "provider", "agent")}),
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


class TeamModelAccessAdminForm(forms.ModelForm):
    class Meta:
        model = TeamModelAccess
        fields = ("team", "mode", "allowed_models")

    def clean_allowed_models(self) -> list[str]:
        try:
            return clean_allowed_models(self.cleaned_data.get("allowed_models") or [])
        except InvalidInput as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(TeamModelAccess)
class TeamModelAccessAdmin(admin.ModelAdmin):
    form = TeamModelAccessAdminForm
    list_display = ("team", "mode", "allowed_models", "updated_by", "updated_at")
    list_filter = ("mode",)
    list_select_related = ("team", "updated_by")
    search_fields = ("team__slug", "team__name")
    raw_id_fields = ("team",)
    readonly_fields = ("updated_by", "created_at", "updated_at")

    def save_model(
        self, request: HttpRequest, obj: TeamModelAccess, form: Any, change: bool
    ) -> None:
        obj.updated_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

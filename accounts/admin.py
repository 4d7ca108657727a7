"""Admin for teams (members inline; per-team limits), API keys (revoke action; the key is never
shown, only its prefix), secrets (names only) and the read-only audit log (search, filters by
action, origin, target type and team, date hierarchy)."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.audit import AuditedAdmin, ReadOnlyAdminMixin, audit_request
from accounts.limits import parse_rate
from accounts.models import ApiKey, AuditEntry, Membership, Secret, Team
from accounts.services import api_key_revoke


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)


class TeamForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ("name", "slug", "is_personal", "max_running_tasks", "max_sandboxes", "rate_limit")

    def clean_rate_limit(self) -> str:
        value = self.cleaned_data.get("rate_limit", "")
        if value:
            try:
                parse_rate(value)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
        return value


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    form = TeamForm
    list_display = (
        "slug", "name", "is_personal", "max_running_tasks", "max_sandboxes", "rate_limit",
        "created_at",
    )  # fmt: skip
    list_filter = ("is_personal",)
    search_fields = ("slug", "name", "uuid", "memberships__user__username")
    readonly_fields = ("uuid", "created_at", "updated_at")
    inlines = (MembershipInline,)
    fieldsets = (
        (None, {"fields": ("uuid", "name", "slug", "is_personal")}),
        ("Limits (empty: the server default)", {
            "fields": ("max_running_tasks", "max_sandboxes", "rate_limit"),
        }),
        ("Timestamps", {"fields": ("created_at", "updated_at")}),
    )  # fmt: skip


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdmin):
    list_display = (
        "name", "prefix", "user", "team", "scopes", "expires_at", "last_used_at", "revoked_at",
    )  # fmt: skip
    list_filter = ("revoked_at", "team")
    list_select_related = ("user", "team")
    search_fields = ("name", "prefix", "user__username", "team__slug")
    readonly_fields = (
        "uuid", "prefix", "user", "team", "scopes", "created_at", "last_used_at", "revoked_at",
    )  # fmt: skip
    fields = ("uuid", "name", "prefix", "user", "team", "scopes", "expires_at", "created_at",
              "last_used_at", "revoked_at")  # fmt: skip
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # keys are created by their users (API, console, create_user_token)

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(api_key=key)
            audit_request(request, "api_key.revoke", key, prefix=key.prefix)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


@admin.register(Secret)
class SecretAdmin(AuditedAdmin):
    list_display = ("name", "team", "session", "created_by", "updated_at")
    list_select_related = ("team", "session", "created_by")
    search_fields = ("name", "team__slug")
    readonly_fields = ("uuid", "name", "team", "session", "created_by", "created_at", "updated_at")
    exclude = ("ciphertext",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # values are write-only through the API


class OriginFilter(admin.SimpleListFilter):
    """Whether an entry was written by an operator in this admin (``admin.*`` actions) or by
    a client of the API, console or integrations."""

    title = "origin"
    parameter_name = "origin"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("admin", "the admin"), ("api", "API and other clients")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "admin":
            return queryset.filter(action__startswith="admin.")
        if self.value() == "api":
            return queryset.exclude(action__startswith="admin.")
        return queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "action", "actor", "credential", "team", "target_type",
                    "target_repr", "ip")  # fmt: skip
    list_filter = (
        OriginFilter, "action", "target_type", ("team", admin.RelatedOnlyFieldListFilter),
    )  # fmt: skip
    list_select_related = ("actor", "team")
    search_fields = (
        "action", "target_id", "target_repr", "actor__username", "credential", "ip",
    )  # fmt: skip
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = (
        "uuid", "created_at", "action", "actor", "credential", "team", "target_type",
        "target_id", "target_repr", "details_pretty", "ip",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="details")
    def details_pretty(self, obj: AuditEntry) -> str:
        text = json.dumps(obj.details, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        return format_html("<pre>{}</pre>", text)

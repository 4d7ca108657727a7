"""Django admin for operators: who attached which runtime to which session, and when.

Rows are written by the protocol only (a runtime registering or leaving), so they cannot be
added or edited here; deleting old rows is allowed (and audited)."""

from __future__ import annotations

from django.contrib import admin

from accounts.audit import AuditedAdmin, ReadOnlyAdminMixin
from runtimes.models import Runtime


@admin.register(Runtime)
class RuntimeAdmin(ReadOnlyAdminMixin, AuditedAdmin):
    deletable = True  # old attachment records
    list_display = (
        "runtime_id",
        "session",
        "team",
        "user",
        "status",
        "connected_at",
        "last_seen_at",
        "disconnected_at",
    )
    list_filter = ("status",)
    list_select_related = ("session", "team", "user")
    search_fields = ("runtime_id", "uuid", "session__uuid", "team__slug", "user__username")
    date_hierarchy = "connected_at"
    readonly_fields = (
        "uuid",
        "runtime_id",
        "session",
        "team",
        "user",
        "credential",
        "channel_name",
        "kinds",
        "capabilities",
        "status",
        "connected_at",
        "last_seen_at",
        "disconnected_at",
        "detach_reason",
        "displaced_by",
        "created_at",
        "updated_at",
    )

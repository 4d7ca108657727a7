"""The records runs leave behind: the read-only event log and artifacts (viewable and
deletable with their stored file, never edited)."""

from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.audit import AuditedAdmin, ReadOnlyAdminMixin
from sessions.models import Artifact, Event
from sessions.services.artifacts import artifact_files_delete_on_commit


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only log: viewable, never edited."""

    list_display = ("seq", "session", "task", "type", "created_at")
    list_filter = ("type",)
    list_select_related = ("session", "task")
    search_fields = ("session__uuid", "task__uuid")
    show_full_result_count = False


@admin.register(Artifact)
class ArtifactAdmin(ReadOnlyAdminMixin, AuditedAdmin):
    """Files runs produced: viewable and deletable (with their stored file), never edited."""

    deletable = True

    list_display = ("uuid", "name", "session", "task", "content_type", "size", "created_at")
    list_filter = ("content_type",)
    list_select_related = ("session", "task")
    search_fields = ("uuid", "name", "session__uuid", "task__uuid")
    date_hierarchy = "created_at"
    fields = (
        "uuid", "name", "session", "task", "content_type", "size", "sha256", "stored_as",
        "created_at", "updated_at",
    )  # fmt: skip
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="stored as")
    def stored_as(self, obj: Artifact) -> str:
        """The storage path (not a link: MEDIA_ROOT is not served)."""
        return obj.file.name or "—"

    def delete_model(self, request: HttpRequest, obj: Artifact) -> None:
        with transaction.atomic():
            super().delete_model(request, obj)
            artifact_files_delete_on_commit(artifacts=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Artifact]) -> None:
        with transaction.atomic():
            artifacts = list(queryset)
            super().delete_queryset(request, queryset)
            artifact_files_delete_on_commit(artifacts=artifacts)

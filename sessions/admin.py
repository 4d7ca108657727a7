"""Django admin for operators: agents, sessions, tasks (cancel / retry actions), the
read-only event log and artifacts (view, delete). Inlines are read-only; list pages select
their related rows up front."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from accounts.audit import AuditedAdmin, ReadOnlyAdminMixin, audit_request
from runtime_project.exceptions import ApplicationError
from sessions.models import Agent, AgentVersion, Artifact, Event, Session, Task
from sessions.services.artifacts import artifact_files_delete_on_commit
from sessions.services.tasks import task_cancel, task_retry

logger = logging.getLogger(__name__)
PREVIEW_CHARS = 200


def _preview(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


class ReadOnlyInline(admin.TabularInline):
    """An inline that shows rows and never adds, changes or deletes them."""

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def latest_formset(order_field: str, limit: int) -> type[BaseInlineFormSet]:
    """An inline formset showing only the newest ``limit`` rows by ``order_field``, oldest
    first (a session can hold hundreds of thousands of events)."""

    class LatestFormSet(BaseInlineFormSet):
        def get_queryset(self) -> QuerySet[Any]:
            if not hasattr(self, "_latest"):
                assert self.queryset is not None
                newest = self.queryset.order_by(f"-{order_field}").values_list("pk", flat=True)
                ids = list(newest[:limit])
                self._latest = self.queryset.filter(pk__in=ids).order_by(order_field)
            return self._latest

    return LatestFormSet


# Agents ----------------------------------------------------------------------------------------


class AgentVersionInline(ReadOnlyInline):
    model = AgentVersion
    fields = ("version", "kind", "spec_preview", "created_by", "created_at")
    readonly_fields = fields
    ordering = ("-version",)
    show_change_link = False

    @admin.display(description="spec")
    def spec_preview(self, obj: AgentVersion) -> str:
        return _preview(obj.spec)


@admin.register(Agent)
class AgentAdmin(AuditedAdmin):
    list_display = ("slug", "name", "kind", "version", "owner", "is_public", "deleted_at")
    list_filter = ("kind", "is_public")
    list_select_related = ("owner",)
    search_fields = ("slug", "name", "uuid", "owner__username")
    readonly_fields = ("uuid", "version", "created_at", "updated_at")
    inlines = (AgentVersionInline,)


# Sessions --------------------------------------------------------------------------------------


class TaskInline(ReadOnlyInline):
    model = Task
    fk_name = "session"
    fields = ("uuid", "task_type", "status", "current_phase", "created_at", "finished_at")
    readonly_fields = fields
    formset = latest_formset("created_at", 100)


@admin.register(Session)
class SessionAdmin(AuditedAdmin):
    list_display = (
        "uuid",
        "name",
        "agent",
        "owner",
        "status",
        "last_seq",
        "created_at",
        "deleted_at",
    )
    list_filter = ("status", "agent")
    list_select_related = ("agent", "owner")
    search_fields = ("name", "uuid")
    readonly_fields = ("uuid", "last_seq", "created_at", "updated_at")
    raw_id_fields = ("agent", "owner")
    inlines = (TaskInline,)


# Tasks -----------------------------------------------------------------------------------------


class EventInline(ReadOnlyInline):
    model = Event
    fk_name = "task"
    fields = ("seq", "type", "data_preview", "created_at")
    readonly_fields = fields
    show_change_link = False
    formset = latest_formset("seq", 200)
    verbose_name_plural = "events (latest 200)"

    @admin.display(description="data")
    def data_preview(self, obj: Event) -> str:
        return _preview(obj.data)


@admin.register(Task)
class TaskAdmin(AuditedAdmin):
    list_display = (
        "uuid",
        "session",
        "agent",
        "task_type",
        "status",
        "current_phase",
        "created_at",
        "duration",
    )
    list_filter = ("status", "agent", "task_type")
    list_select_related = ("session", "agent")
    search_fields = ("uuid", "session__uuid")
    date_hierarchy = "created_at"
    raw_id_fields = ("session", "agent", "created_by")
    readonly_fields = (
        "uuid",
        "status",
        "current_phase",
        "attempt",
        "worker",
        "lease_expires_at",
        "cancel_requested_at",
        "started_at",
        "finished_at",
        "created_at",
        "updated_at",
    )
    inlines = (EventInline,)
    actions = ("cancel_selected", "retry_selected")

    @admin.display(description="duration")
    def duration(self, obj: Task) -> str:
        ms = obj.duration_ms
        return "—" if ms is None else f"{ms / 1000:.1f} s"

    @admin.action(description="Cancel selected tasks")
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        cancelled, skipped = 0, 0
        for task in queryset:
            if task.is_terminal:
                skipped += 1
                continue
            try:
                task_cancel(task=task, reason=f"cancelled by {request.user} (admin)")
            except ApplicationError:  # finished meanwhile
                skipped += 1
                continue
            audit_request(request, "admin.task_cancel", task)
            cancelled += 1
        if cancelled:
            self.message_user(request, f"Cancel requested for {cancelled} task(s).")
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} finished task(s).", level=messages.WARNING
            )

    @admin.action(description="Retry selected tasks")
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        retried, failed = 0, []
        for task in queryset.select_related("session__agent"):
            try:
                new = task_retry(task=task, user=request.user)
            except ApplicationError as exc:
                failed.append(f"{task.uuid}: {exc.message}")
                continue
            audit_request(request, "admin.task_retry", task, new_task=str(getattr(new, "uuid", "")))
            retried += 1
        if retried:
            self.message_user(request, f"Queued {retried} new task(s).")
        for line in failed:
            self.message_user(request, f"Not retried {line}", level=messages.ERROR)


# Events ----------------------------------------------------------------------------------------


@admin.register(Event)
class EventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only log: viewable, never edited."""

    list_display = ("seq", "session", "task", "type", "created_at")
    list_filter = ("type",)
    list_select_related = ("session", "task")
    search_fields = ("session__uuid", "task__uuid")
    show_full_result_count = False


# Artifacts -------------------------------------------------------------------------------------


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

"""Read-only admin for the step trace (rows are a projection of the event log)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from accounts.audit import AuditedAdmin, ReadOnlyAdminMixin
from debugger.models import Step


@admin.register(Step)
class StepAdmin(ReadOnlyAdminMixin, AuditedAdmin):
    """Viewable, never added, edited or deleted (they go with their task)."""

    list_display = (
        "step_id", "kind", "name", "status", "task_link", "started_at", "duration_ms",
        "prompt_tokens", "completion_tokens",
    )  # fmt: skip
    list_filter = ("kind", "status")
    list_select_related = ("task",)
    search_fields = ("step_id", "name", "task__uuid")
    date_hierarchy = "started_at"
    fields = (
        "uuid", "task_link", "parent", "step_id", "kind", "name", "status", "input", "output",
        "error", "metadata", "started_at", "finished_at", "duration_ms", "prompt_tokens",
        "completion_tokens", "cost_usd", "seq_started", "seq_finished",
    )  # fmt: skip
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="task", ordering="task")
    def task_link(self, obj: Step) -> str:
        url = reverse("admin:agent_sessions_task_change", args=[obj.task_id])
        return format_html('<a href="{}">{}</a>', url, obj.task.uuid)

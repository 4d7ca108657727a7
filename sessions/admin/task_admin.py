"""The task pages of the admin: the list (filters by status, agent, team, type and finish
time; search by ids, agent and creator; date hierarchy) with bulk cancel / retry / re-run /
force-kill, and the change page with a live status and event timeline
(``sessions/static/sessions/admin/task-live.js`` polling ``<pk>/timeline/``) and the same
four actions as buttons (``<pk>/actions/<name>/``, POST)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.audit import AuditedAdmin
from sessions.admin import task_actions
from sessions.admin.common import ReadOnlyInline, action_done, json_error, latest_formset, preview
from sessions.admin.filters import FinishedFilter, TeamFilter
from sessions.models import Event, Task

LIVE_POLL_MS = 1000

# name -> (button label, when it is enabled, what it does)
TOOLS: dict[str, tuple[str, str, Callable[..., task_actions.Outcome]]] = {
    "cancel": ("Cancel", "active", task_actions.cancel),
    "retry": ("Retry", "retryable", task_actions.retry),
    "rerun": ("Re-run with the same input", "always", task_actions.retry),
    "kill": ("Force-kill sandbox", "always", task_actions.force_kill),
}


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
        return preview(obj.data)


def _report(
    admin_: admin.ModelAdmin,
    request: HttpRequest,
    outcomes: list[task_actions.Outcome],
    done: str,
    refused: str | None = None,
) -> None:
    """Sum up a bulk action: ``done`` (formatted with ``n``) for what happened; ``refused``
    (with ``n``) for what did not, else each refusal's own message."""
    ok = [o for o in outcomes if o.ok]
    if ok:
        admin_.message_user(request, done.format(n=len(ok)), messages.SUCCESS)
    not_ok = [o for o in outcomes if not o.ok]
    if not_ok and refused:
        admin_.message_user(request, refused.format(n=len(not_ok)), messages.WARNING)
    elif not_ok:
        for outcome in not_ok:
            admin_.message_user(request, outcome.message, messages.WARNING)


@admin.register(Task)
class TaskAdmin(AuditedAdmin):
    change_form_template = "admin/agent_sessions/task/change_form.html"
    list_display = (
        "uuid", "session", "agent", "task_type", "status", "current_phase", "created_at",
        "duration",
    )  # fmt: skip
    list_filter = ("status", FinishedFilter, "agent", TeamFilter, "task_type")
    list_select_related = ("session", "agent")
    search_fields = ("uuid", "session__uuid", "agent__slug", "created_by__username")
    date_hierarchy = "created_at"
    raw_id_fields = ("session", "agent", "created_by", "parent", "forked_from")
    readonly_fields = (
        "uuid", "status", "current_phase", "attempt", "worker", "lease_expires_at",
        "cancel_requested_at", "started_at", "finished_at", "created_at", "updated_at",
    )  # fmt: skip
    fieldsets = (
        (None, {"fields": (
            "uuid", "session", "agent", "agent_version", "task_type", "status", "current_phase",
            "created_by",
        )}),
        ("Input", {"fields": ("input", "config")}),
        ("Outcome", {"fields": ("result", "error", "usage")}),
        ("Execution", {"fields": (
            "attempt", "worker", "lease_expires_at", "cancel_requested_at", "cancel_reason",
            "timeout_s", "started_at", "finished_at", "created_at", "updated_at",
        )}),
        ("More", {"classes": ("collapse",), "fields": (
            "multitask_strategy", "on_disconnect", "idempotency_key", "parent", "pending_action",
            "resume", "forked_from", "forked_from_step",
        )}),
    )  # fmt: skip
    inlines = (EventInline,)
    actions = ("cancel_selected", "retry_selected", "rerun_selected", "kill_selected")

    @admin.display(description="duration")
    def duration(self, obj: Task) -> str:
        ms = obj.duration_ms
        return "—" if ms is None else f"{ms / 1000:.1f} s"

    # Bulk actions (the changelist) ------------------------------------------------------------

    @admin.action(description="Cancel selected tasks", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        outcomes = task_actions.run_bulk(request, queryset, task_actions.cancel)
        _report(self, request, outcomes, "Cancel requested for {n} task(s).",
                "Skipped {n} finished task(s).")  # fmt: skip

    @admin.action(
        description="Retry selected tasks (failed, cancelled or timed out)", permissions=["change"]
    )
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        outcomes = task_actions.run_bulk(request, queryset, task_actions.retry)
        _report(self, request, outcomes, "Queued {n} new task(s).")

    @admin.action(description="Re-run selected tasks with the same input", permissions=["change"])
    def rerun_selected(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        outcomes = task_actions.run_bulk(request, queryset, task_actions.retry, rerun=True)
        _report(self, request, outcomes, "Queued {n} new task(s).")

    @admin.action(
        description="Force-kill: cancel and stop the sessions' sandboxes", permissions=["change"]
    )
    def kill_selected(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        outcomes = task_actions.run_bulk(request, queryset, task_actions.force_kill)
        _report(self, request, outcomes, "Force-killed {n} task(s) and their sandboxes.")

    # The change page --------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/timeline/",
                wrap(self.timeline_view),
                name="agent_sessions_task_timeline",
            ),
            path(
                "<path:object_id>/actions/<slug:tool>/",
                wrap(self.tool_view),
                name="agent_sessions_task_tool",
            ),
            *super().get_urls(),
        ]

    def _task(self, request: HttpRequest, object_id: str) -> Task:
        task = self.get_object(request, object_id)
        if task is None:
            raise Http404("No such task.")
        return task

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        task = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if task is not None:
            can_act = self.has_change_permission(request, task)
            extra["task_tools"] = [
                {
                    "name": name,
                    "label": label,
                    "when": when,
                    "url": reverse("admin:agent_sessions_task_tool", args=[task.pk, name]),
                }
                for name, (label, when, _) in TOOLS.items()
                if can_act
            ]
            extra["subtitle"] = f"Task {task.uuid}"  # str(task) holds its status at page load
            extra["task_live"] = task_actions.task_state(task)
            extra["task_live_config"] = {
                "timeline_url": reverse("admin:agent_sessions_task_timeline", args=[task.pk]),
                "poll_ms": LIVE_POLL_MS,
                "retryable": sorted(task_actions.RETRYABLE),
                **task_actions.task_state(task),
            }
        return super().change_view(request, object_id, form_url, extra)

    @staticmethod
    def _after(request: HttpRequest) -> int | None:
        raw = request.GET.get("after")
        if raw is None or raw == "":
            return None
        if not raw.isdigit():
            raise ValueError(raw)
        return int(raw)

    def timeline_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET ``<pk>/timeline/?after=<seq>``: the task's status and its events after ``seq``
        (JSON, see ``task_actions.timeline``); staff with view permission only."""
        return require_GET(self._timeline)(request, object_id)

    def _timeline(self, request: HttpRequest, object_id: str) -> HttpResponse:
        task = self.get_object(request, object_id)
        if task is None:
            return json_error(404, "not_found", "Task not found.", id=object_id)
        if not self.has_view_permission(request, task):
            return json_error(403, "permission_denied", "You may not view this task.")
        try:
            after = self._after(request)
        except ValueError:
            return json_error(400, "invalid_input", "after must be a sequence number.")
        body = task_actions.timeline(task.pk, after=after)
        if body is None:
            return json_error(404, "not_found", "Task not found.", id=object_id)
        return JsonResponse(body)

    def tool_view(self, request: HttpRequest, object_id: str, tool: str) -> HttpResponse:
        """POST ``<pk>/actions/<cancel|retry|rerun|kill>/``: one button of the change page.
        A form submission is redirected back (a retry or re-run: to the new task) with a
        message; the page's script gets JSON (``common.action_done``)."""
        return require_POST(self._tool)(request, object_id, tool)

    def _tool(self, request: HttpRequest, object_id: str, tool: str) -> HttpResponse:
        if tool not in TOOLS:
            raise Http404("No such action.")
        task = self._task(request, object_id)
        if not self.has_change_permission(request, task):
            raise PermissionDenied
        _label, _when, act = TOOLS[tool]
        outcome = act(request, task, rerun=True) if tool == "rerun" else act(request, task)
        back = reverse("admin:agent_sessions_task_change", args=[task.pk])
        new = outcome.new_task
        return action_done(
            request,
            message=outcome.message,
            level=messages.SUCCESS if outcome.ok else messages.WARNING,
            back_to=back,
            redirect=reverse("admin:agent_sessions_task_change", args=[new.pk]) if new else None,
        )

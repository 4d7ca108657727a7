"""Sessions in the admin: the list (filters by status, team and agent; search; date
hierarchy) and the change page with the session's latest tasks, its workspace files (read
through ``sandboxes.paths``, like the workspace API) and its sandbox (live state and usage
from ``sandboxes.selectors.sandbox_state``) with a button that stops it
(``<pk>/sandbox/stop/``, POST)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from accounts.audit import AuditedAdmin, audit_request
from runtime_project.exceptions import ApplicationError
from sandboxes import paths
from sandboxes.selectors import sandbox_state
from sandboxes.services import sandbox_stop_sync
from sessions.admin.common import ReadOnlyInline, action_done, latest_formset
from sessions.admin.filters import SessionTeamFilter
from sessions.models import Session, Task

logger = logging.getLogger(__name__)
FILES_SHOWN = 200


class TaskInline(ReadOnlyInline):
    model = Task
    fk_name = "session"
    fields = ("uuid", "task_type", "status", "current_phase", "created_at", "finished_at")
    readonly_fields = fields
    formset = latest_formset("created_at", 100)
    verbose_name_plural = "tasks (latest 100)"


def workspace_listing(session: Session, limit: int = FILES_SHOWN) -> dict[str, Any]:
    """``{"entries": [{"path", "type", "size", "modified"}], "truncated", "total_bytes",
    "error"}``: the first ``limit`` entries of the workspace (recursive, sorted by path;
    symlinks listed, never followed), the byte total of the regular files listed."""
    root = session.workspace_path
    if not root.is_dir():
        return {"entries": [], "truncated": False, "total_bytes": 0, "error": ""}
    try:
        entries = paths.list_dir(root, "", recursive=True, limit=limit + 1)
    except (ApplicationError, OSError) as exc:
        return {"entries": [], "truncated": False, "total_bytes": 0, "error": str(exc)}
    shown = entries[:limit]
    return {
        "entries": [
            {
                "path": e.path,
                "type": e.type,
                "size": e.size,
                "modified": datetime.fromtimestamp(e.modified, tz=UTC),
            }
            for e in shown
        ],
        "truncated": len(entries) > limit,
        "total_bytes": sum(e.size for e in shown if e.type == "file"),
        "error": "",
    }


def sandbox_panel(session: Session) -> dict[str, Any]:
    """The session's sandbox as the backend sees it (``sandbox_state``), with ``error`` set
    instead when the backend could not be asked."""
    try:
        state = async_to_sync(sandbox_state)(session=session)
    except Exception as exc:  # the page still shows; the operator sees why the panel is empty
        logger.warning("sandbox state of session %s unavailable", session.uuid, exc_info=True)
        return {"error": f"The sandbox backend did not answer: {type(exc).__name__}."}
    usage = state.get("usage") or {}
    memory, pids = usage.get("memory_bytes"), usage.get("pids")
    return {
        **state,
        "memory_mib": None if memory is None else round(memory / 1048576, 1),
        "cpu_s": usage.get("cpu_s"),  # where the backend measures it
        "pids": None if pids is None else int(pids),
        "error": "",
    }


@admin.register(Session)
class SessionAdmin(AuditedAdmin):
    change_form_template = "admin/agent_sessions/session/change_form.html"
    list_display = (
        "uuid", "name", "agent", "team", "owner", "status", "last_seq", "created_at",
        "deleted_at",
    )  # fmt: skip
    list_filter = ("status", SessionTeamFilter, "agent")
    list_select_related = ("agent", "owner", "team")
    search_fields = ("name", "uuid", "owner__username", "agent__slug", "team__slug")
    date_hierarchy = "created_at"
    readonly_fields = ("uuid", "last_seq", "created_at", "updated_at")
    raw_id_fields = ("agent", "owner", "team")
    inlines = (TaskInline,)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/sandbox/stop/",
                self.admin_site.admin_view(self.sandbox_stop_view),
                name="agent_sessions_session_sandbox_stop",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        session = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if session is not None:
            extra["workspace"] = workspace_listing(session)
            extra["workspace_max_bytes"] = settings.WORKSPACE_MAX_BYTES
            extra["sandbox"] = sandbox_panel(session)
            extra["sandbox_stop_url"] = (
                reverse("admin:agent_sessions_session_sandbox_stop", args=[session.pk])
                if self.has_change_permission(request, session)
                else ""
            )
        return super().change_view(request, object_id, form_url, extra)

    def sandbox_stop_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST ``<pk>/sandbox/stop/``: stop (kill) the session's sandbox; its tasks are not
        cancelled here (the task page's Force-kill does both)."""
        return require_POST(self._sandbox_stop)(request, object_id)

    def _sandbox_stop(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = self.get_object(request, object_id)
        if session is None:
            raise Http404("No such session.")
        if not self.has_change_permission(request, session):
            raise PermissionDenied
        stopped = sandbox_stop_sync(session=session)
        audit_request(request, "admin.sandbox_stop", session, was_running=stopped)
        return action_done(
            request,
            message="Sandbox stopped." if stopped else "The sandbox was not running.",
            level=messages.SUCCESS if stopped else messages.INFO,
            back_to=reverse("admin:agent_sessions_session_change", args=[session.pk]),
        )

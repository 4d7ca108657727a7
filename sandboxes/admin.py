"""Admin: every session's sandbox with its live state and usage (memory, CPU time, processes,
workspace disk use) and a kill action, on the list and as a button on the change page
(``<pk>/stop/``, POST)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from accounts.audit import AuditedAdmin, audit_request
from runtime_project.exceptions import ApplicationError
from sandboxes import paths
from sandboxes.models import Sandbox
from sandboxes.registry import get_backend
from sandboxes.services import sandbox_stop_sync
from sessions.admin.common import action_done

# The running sandboxes of the changelist being rendered, fetched once per request with one
# list_sandboxes() call (one engine round trip), not one info() per row and column.
_running: ContextVar[dict[str, Any] | None] = ContextVar("sandbox_admin_running", default=None)


def _live(sandbox: Sandbox) -> Any:
    running = _running.get()
    if running is not None:
        return running.get(sandbox.sandbox_id)
    cache = sandbox.__dict__.setdefault("_live_info", {})
    if "info" not in cache:
        cache["info"] = async_to_sync(get_backend().info)(sandbox.sandbox_id)
    return cache["info"]


def _usage(sandbox: Sandbox, key: str) -> float | None:
    info = _live(sandbox)
    if info is None or info.state != "running":
        return None
    value = info.usage.get(key)
    return None if value is None else float(value)


@admin.register(Sandbox)
class SandboxAdmin(AuditedAdmin):
    change_form_template = "admin/sandboxes/sandbox/change_form.html"
    list_display = (
        "session", "owner", "live_state", "memory_mb", "cpu_seconds", "pid_count", "disk_mb",
        "processes", "idle_policy", "idle_timeout_s", "tier", "start_count", "last_started_at",
    )  # fmt: skip
    list_filter = ("idle_policy", "backend", "tier")
    search_fields = ("session__uuid", "session__name", "session__owner__username")
    date_hierarchy = "last_started_at"
    list_select_related = ("session", "session__owner")
    list_per_page = 50  # each row's disk use walks its workspace
    readonly_fields = (
        "session", "backend", "tier", "start_count", "last_started_at", "last_stopped_at",
        "created_at", "live_state", "memory_mb", "cpu_seconds", "pid_count", "disk_mb",
        "processes",
    )  # fmt: skip
    fields = ("session", "idle_policy", "idle_timeout_s", *readonly_fields[1:])
    actions = ("stop_sandboxes",)

    @admin.display(description="owner")
    def owner(self, sandbox: Sandbox) -> str:
        return str(sandbox.session.owner)

    @admin.display(description="state")
    def live_state(self, sandbox: Sandbox) -> str:
        info = _live(sandbox)
        return "running" if info is not None and info.state == "running" else "stopped"

    @admin.display(description="memory (MiB)")
    def memory_mb(self, sandbox: Sandbox) -> str:
        used = _usage(sandbox, "memory_bytes")
        return "-" if used is None else f"{used / 1048576:.1f}"

    @admin.display(description="CPU (s)")
    def cpu_seconds(self, sandbox: Sandbox) -> str:
        used = _usage(sandbox, "cpu_s")
        return "-" if used is None else f"{used:.1f}"

    @admin.display(description="processes")
    def pid_count(self, sandbox: Sandbox) -> str:
        used = _usage(sandbox, "pids")
        return "-" if used is None else str(int(used))

    @admin.display(description="disk (MiB)")
    def disk_mb(self, sandbox: Sandbox) -> str:
        """Bytes of the session's workspace (what the workspace limit counts)."""
        root = sandbox.session.workspace_path
        if not root.is_dir():
            return "0.0"
        try:
            return f"{paths.workspace_size(root) / 1048576:.1f}"
        except (ApplicationError, OSError):
            return "?"

    @admin.display(description="background processes")
    def processes(self, sandbox: Sandbox) -> str:
        info = _live(sandbox)
        if info is None:
            return "-"
        return ", ".join(f"{p.process_id}: {' '.join(p.argv)[:60]}" for p in info.processes) or "-"

    @admin.action(description="Stop (kill) the selected sandboxes", permissions=["change"])
    def stop_sandboxes(self, request: HttpRequest, queryset: QuerySet[Sandbox]) -> None:
        stopped = 0
        for sandbox in queryset.select_related("session"):
            if sandbox_stop_sync(session=sandbox.session):
                stopped += 1
                audit_request(request, "admin.sandbox_stop", sandbox.session)
        self.message_user(request, f"Stopped {stopped} running sandbox(es).", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/stop/",
                self.admin_site.admin_view(self.stop_view),
                name="sandboxes_sandbox_stop",
            ),
            *super().get_urls(),
        ]

    def stop_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST ``<pk>/stop/``: stop (kill) this sandbox; its processes die, the workspace
        stays. Tasks of the session are not cancelled here (the task page's Force-kill)."""
        return require_POST(self._stop)(request, object_id)

    def _stop(self, request: HttpRequest, object_id: str) -> HttpResponse:
        sandbox = self.get_object(request, object_id)
        if sandbox is None:
            raise Http404("No such sandbox.")
        if not self.has_change_permission(request, sandbox):
            raise PermissionDenied
        stopped = sandbox_stop_sync(session=sandbox.session)
        audit_request(request, "admin.sandbox_stop", sandbox.session, was_running=stopped)
        return action_done(
            request,
            message="Sandbox stopped." if stopped else "The sandbox was not running.",
            level=messages.SUCCESS if stopped else messages.INFO,
            back_to=reverse("admin:sandboxes_sandbox_change", args=[sandbox.pk]),
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        infos = async_to_sync(get_backend().list_sandboxes)()
        token = _running.set({info.sandbox_id: info for info in infos})
        try:
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response = response.render()  # columns read the context var while rendering
            return response
        finally:
            _running.reset(token)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created with a session's first use

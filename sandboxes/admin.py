"""Admin: every session's sandbox with its live state and usage, and a kill action."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.audit import AuditedAdmin, audit_request
from sandboxes.models import Sandbox
from sandboxes.registry import get_backend
from sandboxes.services import sandbox_stop_sync

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


@admin.register(Sandbox)
class SandboxAdmin(AuditedAdmin):
    list_display = (
        "session", "owner", "live_state", "memory_mb", "processes", "idle_policy",
        "idle_timeout_s", "tier", "start_count", "last_started_at",
    )  # fmt: skip
    list_filter = ("idle_policy", "backend", "tier")
    search_fields = ("session__uuid", "session__name", "session__owner__username")
    date_hierarchy = "last_started_at"
    list_select_related = ("session", "session__owner")
    readonly_fields = (
        "session", "backend", "tier", "start_count", "last_started_at", "last_stopped_at",
        "created_at", "live_state", "memory_mb", "processes",
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
        info = _live(sandbox)
        used = info.usage.get("memory_bytes") if info is not None else None
        return "-" if used is None else f"{used / 1048576:.1f}"

    @admin.display(description="background processes")
    def processes(self, sandbox: Sandbox) -> str:
        info = _live(sandbox)
        if info is None:
            return "-"
        return ", ".join(f"{p.process_id}: {' '.join(p.argv)[:60]}" for p in info.processes) or "-"

    @admin.action(description="Stop (kill) the selected sandboxes")
    def stop_sandboxes(self, request: HttpRequest, queryset: QuerySet[Sandbox]) -> None:
        stopped = 0
        for sandbox in queryset:
            if sandbox_stop_sync(session=sandbox.session):
                stopped += 1
                audit_request(request, "admin.sandbox_stop", sandbox.session)
        self.message_user(request, f"Stopped {stopped} running sandbox(es).", messages.SUCCESS)

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

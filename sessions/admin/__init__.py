"""Django admin for operators (docs/admin.md): agents with their version history and diffs,
sessions with their tasks, files and sandbox, tasks with a live timeline and cancel / retry /
re-run / force-kill, the read-only event log and artifacts. The index page shows a dashboard
(``dashboard.py``, ``templates/admin/index.html``).

``ReadOnlyInline`` and ``latest_formset`` are used by other apps' admins."""

from __future__ import annotations

from sessions.admin import agent_admin, log_admin, session_admin, task_admin  # noqa: F401
from sessions.admin.common import ReadOnlyInline, latest_formset

__all__ = ["ReadOnlyInline", "latest_formset"]

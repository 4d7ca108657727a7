"""``{% operator_dashboard as dashboard %}`` for the admin index (templates/admin/index.html):
the task counts of ``sessions.admin.dashboard``, or ``None`` for a user who may not view
tasks."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def operator_dashboard(context: dict[str, Any]) -> Any:
    """The dashboard for the signed-in staff user (``None`` without ``view_task``)."""
    from sessions.admin.dashboard import dashboard_data

    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("agent_sessions.view_task"):
        return None
    return dashboard_data()

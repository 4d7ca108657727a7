"""Checks of a task's ``config`` that do not depend on the agent kind (the kind's own keys are
checked by ``Runner.validate_config``): the debugger's ``debug`` key and the team's model
access. Called by ``task_create`` for every new task."""

from __future__ import annotations

from typing import Any


def task_config_check(*, session: Any, user: Any, config: dict[str, Any]) -> None:
    """Raise ``InvalidInput`` (400) or ``PermissionDenied`` (403) when ``config`` asks for what
    the task may not have: a malformed ``debug`` object (``debugger.config``), a model
    outside the set the session's team may use (``providers.access``), a ``monitor_id`` the
    user may not attach runs to (404 ``monitor_not_found``). Normalizes ``monitor_id``."""
    from debugger.config import debug_config_validate
    from providers.access import task_model_check

    debug_config_validate(config)
    task_model_check(session=session, user=user, config=config)
    if config.get("monitor_id") is not None:
        # Every entrypoint (HTTP headers, WebSocket frames, schedules) is checked here: a run
        # is mirrored only to a monitor its creator may use (the owner or its team's members).
        from debugger.monitors import monitor_for_run

        monitor = monitor_for_run(user=user, monitor_id=config["monitor_id"])
        config["monitor_id"] = str(monitor.uuid)

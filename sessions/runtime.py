"""Process start-up for the server: log the sandbox tier loudly and start the inline executor."""

from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger("runtime")


async def start_runtime() -> None:
    """Called once per server process on its event loop (see ``runtime_project.asgi``)."""
    from sandboxes.registry import get_backend
    from sessions.executors import get_executor

    caps = get_backend().capabilities()
    if not caps.available:
        logger.error("sandbox UNAVAILABLE (%s): tasks will fail until this is fixed", caps.reason)
    elif not caps.isolated:
        logger.warning(
            "sandbox tier %s: commands run WITHOUT isolation (SANDBOX_ALLOW_UNISOLATED)", caps.tier
        )
    else:
        logger.info("sandbox backend %s, isolation tier %s", caps.backend, caps.tier)
    if settings.TASK_EXECUTOR == "inline":
        await get_executor().start()
    else:
        logger.info(
            "TASK_EXECUTOR=%s: tasks run in `manage.py run_worker` processes",
            settings.TASK_EXECUTOR,
        )

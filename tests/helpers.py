"""Small helpers shared by execution and transport tests."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async

from sessions.models import Event, Task


async def wait_terminal(task: Task, timeout: float = 60) -> Task:
    """Wait until the task is terminal (reads the DB; tests only)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        fresh = await sync_to_async(Task.objects.select_related("session", "agent").get)(pk=task.pk)
        if fresh.is_terminal:
            return fresh
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"task still {fresh.status} after {timeout}s")
        await asyncio.sleep(0.05)


def events_of(task: Task) -> list[Event]:
    return list(Event.objects.filter(task=task).order_by("seq"))


def stdout_of(task: Task) -> str:
    return "".join(e.data["text"] for e in events_of(task) if e.type == "process.stdout")


def event_data(task: Task, type: str) -> list[dict[str, Any]]:
    """The ``data`` of ``task``'s events of one ``type``, in log order."""
    return [e.data for e in events_of(task) if e.type == type]


def agent_task(
    owner: Any, kind: str, spec: dict[str, Any], data: dict[str, Any],
    config: dict[str, Any] | None = None,
) -> Task:  # fmt: skip
    """A new agent of ``kind`` with ``spec`` (a unique slug), a session on it and a queued task
    with ``data`` as input (sync: wrap it in ``sync_to_async`` from async tests)."""
    import time

    from sessions.services.agents import agent_create
    from sessions.services.sessions import session_create
    from sessions.services.tasks import task_create

    agent = agent_create(owner=owner, slug=f"{kind}-{time.monotonic_ns()}", name=kind,
                         kind=kind, spec=spec)  # fmt: skip
    session = session_create(owner=owner, agent=agent)
    return task_create(session=session, user=owner, input=data, config=config or {})[0]

"""``call_agent``: an llm agent runs another agent as a child task of the same session.

The child is a real task (its own row, events, status and usage, ``parent`` set), created
already ``running`` under the parent's worker and run in place, so it shares the session's
sandbox and workspace and never waits behind its parent in the session queue. Cancelling the
parent cancels the child. Depth is bounded by ``LLM_MAX_AGENT_DEPTH``. The callee must be one
of the agents the spec lists (``spec.agents``) and visible to the user who created the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from sessions.runners.base import TaskContext


async def call_agent(ctx: TaskContext, slug: str, data: dict[str, Any]) -> tuple[str, bool]:
    """Run agent ``slug`` with input ``data``; returns ``(JSON text for the model, is_error)``:
    ``{"task_id", "status", "result", "error"}``.

    Raises:
        NotFound: the agent does not exist or the task's user cannot see it.
        InvalidInput: ``data`` does not match the agent's input schema, or the depth limit.
    """
    from sessions.execution import TaskControl, db_call, run_claimed_task
    from sessions.selectors import agent_get
    from sessions.services.waiting import task_create_child

    def callee() -> Any:
        user = ctx.task.created_by if ctx.task.created_by_id else ctx.session.owner
        return agent_get(user=user, agent_id=slug)

    agent = await db_call(callee)()
    child = await db_call(task_create_child)(
        parent=ctx.task, agent=agent, input=data, worker=ctx.worker
    )
    control = TaskControl()

    async def follow_parent() -> None:
        await ctx.cancel_requested.wait()
        control.request("cancelled")

    watcher = asyncio.ensure_future(follow_parent())
    try:
        child = await run_claimed_task(child, worker=ctx.worker, control=control)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    outcome = {"task_id": str(child.uuid), "status": child.status, "result": child.result,
               "error": child.error}  # fmt: skip
    return json.dumps(outcome), child.status != "succeeded"

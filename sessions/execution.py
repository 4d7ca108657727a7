"""Running one claimed task: ``run_claimed_task`` and the ``execute_task`` entrypoint (DESIGN §4).

The executor (``sessions.executors``) decides *when* a task runs; this module decides *how*:
it builds the runner context, renews the lease, enforces the wall-clock timeout, turns a
cancellation request into a cooperative stop and then a forced one, and always records a
terminal status with a terminal ``task.status`` event, whatever the runner did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from typing import Any

import structlog
from django.conf import settings

from debugger.config import debug_settings
from debugger.control import DebugControl
from runtime_project.db import db_call
from runtime_project.exceptions import ApplicationError
from sessions.choices import TaskStatus
from sessions.models import Task
from sessions.runners import TaskContext, TaskResult, get_runner_class
from sessions.runners.secrets import RunSecrets
from sessions.services.agents import agent_spec_at
from sessions.services.events import EventBuffer
from sessions.services.tasks import (
    task_claim_next,
    task_finish,
    task_release_on_shutdown,
    task_renew_lease,
)
from sessions.services.waiting import task_suspend

logger = logging.getLogger(__name__)


def worker_name() -> str:
    """``host:pid:random`` — identifies the process holding a task's lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class TaskControl:
    """Handle the executor keeps for a running task: request a stop, with a reason, and ring
    its debugger when a command for it arrives."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.reason: str | None = None  # "cancelled" | "timed_out" | "shutdown" | "aborted"
        self.debug: DebugControl | None = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.stop.set()

    def ring(self) -> None:
        """A debugger command for this task was stored (``debugger.debugging``)."""
        if self.debug is not None:
            self.debug.ring()


async def run_claimed_task(task: Task, *, worker: str, control: TaskControl | None = None) -> Task:
    """Run a task that ``task_claim_next`` put in ``running``; returns it in a terminal status.

    Never raises for a runner failure: errors become ``failed`` with an error object.
    The session's secrets are injected as the agent spec asks and masked in everything the run
    produces (``sessions.runners.secrets``).
    """
    secrets = RunSecrets()
    # task_id/session_id on every JSON log line of the run (observability/logs.py)
    ids = {"task_id": str(task.uuid), "session_id": str(task.session.uuid)}
    with structlog.contextvars.bound_contextvars(**ids):
        try:
            return await _run_with_secrets(task, worker=worker, control=control, secrets=secrets)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(secrets.close())


async def _run_with_secrets(
    task: Task, *, worker: str, control: TaskControl | None, secrets: RunSecrets
) -> Task:
    control = control or TaskControl()
    buffer = EventBuffer(session=task.session, task_id=task.pk, task_uuid=str(task.uuid))
    buffer.start()
    outcome: TaskResult
    started = time.monotonic()
    try:
        spec = await db_call(agent_spec_at)(agent=task.agent, version=task.agent_version)
        await secrets.open(session=task.session, spec=spec, buffer=buffer)
        runner = get_runner_class(task.agent.kind)()
        ctx = TaskContext(
            task_uuid=str(task.uuid),
            session_uuid=str(task.session.uuid),
            task_type=task.task_type,
            input=task.input,
            config=task.config,
            spec=spec,
            workspace=task.session.workspace_path,
            events=buffer,
            cancel_requested=control.stop,
            cancel_grace_s=settings.TASK_CANCEL_GRACE_S,
            session=task.session,
            task=task,
            worker=worker,
            resume=task.resume,
            secret_env=secrets.env,
        )
        control.debug = ctx.debug = DebugControl(
            task=task, worker=worker, settings=debug_settings(task.config), stop=control.stop,
            request_stop=control.request, flush=buffer.flush, mask=buffer.mask, db=db_call,
        )  # fmt: skip
        if task.cancel_requested_at is not None:
            control.request("cancelled")
        outcome = await _supervise(runner.run(ctx), task=task, worker=worker, control=control)
    except ApplicationError as exc:  # e.g. secret_not_found: the task's error, no traceback
        outcome = TaskResult(status=TaskStatus.FAILED, error=_error_of(exc))
    except Exception as exc:
        logger.exception("task %s crashed", task.uuid)
        outcome = TaskResult(status=TaskStatus.FAILED, error=_error_of(exc))
    status = outcome.status
    if control.reason == "cancelled":
        status = TaskStatus.CANCELLED
        outcome.error = {"code": "cancelled", "message": "The task was cancelled.", "details": {}}
    elif control.reason == "aborted":
        status = TaskStatus.CANCELLED
        step = control.debug.aborted_at if control.debug else None
        outcome.error = {
            "code": "debug_aborted",
            "message": f"The run was aborted in the debugger before step {step!r}.",
            "details": {"step_id": step},
        }
    elif control.reason == "timed_out":
        status = TaskStatus.TIMED_OUT
        outcome.error = {
            "code": "timed_out",
            "message": f"The task exceeded its timeout of {task.timeout_s:g} s.",
            "details": {"timeout_s": task.timeout_s},
        }
    usage = {**outcome.usage, "wall_ms": int((time.monotonic() - started) * 1000)}
    outcome.result, outcome.error = secrets.mask(outcome.result), secrets.mask(outcome.error)
    outcome.pending = secrets.mask(outcome.pending)
    try:
        await buffer.close()
    except Exception:
        logger.exception("could not write the last events of task %s", task.uuid)
    with contextlib.suppress(Exception):
        await secrets.remove_files()  # before the task is seen finished; log masking stays on
    if status == "waiting" and outcome.pending is not None:
        # Parked before any stop landed (even a shutdown): nothing runs, the answer resumes it.
        return await db_call(task_suspend)(
            task=task, worker=worker, pending=outcome.pending, usage=outcome.usage
        )
    if control.reason == "shutdown":
        return await db_call(task_release_on_shutdown)(task=task, worker=worker)
    if status == "waiting":  # a runner that waits must say for what
        status = TaskStatus.FAILED
        outcome.error = {"code": "runner_error", "message": "The agent paused without saying "
                         "what it waits for.", "details": {}}  # fmt: skip
    return await db_call(task_finish)(
        task=task, status=status, result=outcome.result, error=outcome.error, usage=usage
    )


async def _supervise(coro: Any, *, task: Task, worker: str, control: TaskControl) -> TaskResult:
    """Run the runner coroutine under lease renewal, timeout and cancellation."""
    run = asyncio.ensure_future(coro)
    lease = asyncio.ensure_future(_renew_lease(task, worker, control))
    timeout = _Timeout(task.timeout_s, control)
    try:
        stop_wait = asyncio.ensure_future(control.stop.wait())
        await asyncio.wait({run, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            # Cooperative first: the runner sees ctx.cancel_requested and stops its process.
            grace = settings.TASK_CANCEL_GRACE_S + 2.0
            done, _ = await asyncio.wait({run}, timeout=grace)
            if not done:
                logger.warning("task %s ignored the stop request; cancelling it", task.uuid)
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(run, timeout=10)
        stop_wait.cancel()
        if run.cancelled():
            return TaskResult(status=TaskStatus.FAILED)
        exc = run.exception()
        if exc is not None:
            if not control.reason:
                logger.error("runner of task %s failed", task.uuid, exc_info=exc)
            return TaskResult(status=TaskStatus.FAILED, error=_error_of(exc))
        return run.result()
    finally:
        timeout.cancel()
        lease.cancel()
        if not run.done():
            run.cancel()


class _Timeout:
    """The wall-clock timeout of a run (``timeout_s`` seconds), not counting the time it spent
    paused in the debugger: when it fires during a pause, or after pauses, it is pushed back."""

    def __init__(self, timeout_s: float, control: TaskControl) -> None:
        self.control, self.credited_s = control, 0.0
        self.loop = asyncio.get_running_loop()
        self.handle = self.loop.call_later(max(timeout_s, 0.001), self.fire)

    def fire(self) -> None:
        debug = self.control.debug
        if debug is not None:
            if debug.paused_since is not None:
                self.handle = self.loop.call_later(1.0, self.fire)
                return
            owed = debug.paused_s() - self.credited_s
            if owed > 0.001:
                self.credited_s += owed
                self.handle = self.loop.call_later(owed, self.fire)
                return
        self.control.request("timed_out")

    def cancel(self) -> None:
        self.handle.cancel()


async def _renew_lease(task: Task, worker: str, control: TaskControl) -> None:
    interval = max(settings.TASK_LEASE_S / 3, 0.5)
    while True:
        await asyncio.sleep(interval)
        try:
            if await db_call(task_renew_lease)(task=task, worker=worker):
                control.request("cancelled")
            if control.debug is not None:
                await control.debug.poll()  # a debugger doorbell may have been lost
        except Exception:
            logger.warning("lease renewal for task %s failed", task.uuid, exc_info=True)


def _error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ApplicationError):
        return {"code": exc.code, "message": exc.message, "details": exc.details}
    # Never leak internals (paths, tracebacks) to clients: the log has the traceback.
    return {
        "code": "runner_error",
        "message": "The agent failed unexpectedly.",
        "details": {"type": type(exc).__name__},
    }


async def execute_task_async(task_id: Any) -> Task | None:
    """Claim ``task_id`` if it is the next runnable task of its session and run it here.

    Returns the finished task, or ``None`` when it was not runnable (already claimed, finished,
    or another task of its session runs).
    """
    worker = worker_name()
    task = await db_call(Task.objects.select_related("session").filter(uuid=task_id).first)()
    if task is None:
        return None  # deleted meanwhile: a stale message
    claimed = await db_call(task_claim_next)(worker=worker, limit=1, session_id=task.session_id)
    finished = None
    for job in claimed:  # at most one: ours, or an older task of the session that goes first
        done = await _run_listening(job, worker=worker)
        finished = done if job.pk == task.pk else None
    if settings.TASK_EXECUTOR == "celery" and claimed:
        from sessions.dispatch import dispatch_next_in_session

        await db_call(dispatch_next_in_session)(task.session_id)
    return finished


async def _run_listening(task: Task, *, worker: str) -> Task:
    """``run_claimed_task`` with this process listening to the task's control group, so a
    cancel sent from any web process reaches it (the lease renewal also polls the database)."""
    from channels.layers import get_channel_layer

    from sessions.dispatch import task_control_group

    control = TaskControl()
    layer = get_channel_layer()
    listener = None
    if layer is not None:
        channel = await layer.new_channel("task.")
        group = task_control_group(task.uuid)
        await layer.group_add(group, channel)

        async def listen() -> None:
            while True:
                message = await layer.receive(channel)
                if message.get("type") == "task.cancel":
                    control.request("cancelled")
                elif message.get("type") == "task.debug":
                    control.ring()

        listener = asyncio.ensure_future(listen())
    try:
        return await run_claimed_task(task, worker=worker, control=control)
    finally:
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)


def execute_task(task_id: Any) -> Task | None:
    """Synchronous entrypoint (management commands, future Celery tasks)."""
    from sessions.executors.threads import install_closing_pool

    async def run() -> Task | None:
        install_closing_pool()  # asyncio.run ends the pool: its DB connections close with it
        return await execute_task_async(task_id)

    return asyncio.run(run())

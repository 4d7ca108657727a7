"""The ``remote`` kind: the work is done by an external runtime attached to the session over
``/ws/runtimes/`` (docs/remote-runtimes.md).

The runner is the task's side of a conversation held through the channel layer (so it works
whether it runs inside daphne with the in-memory layer, or in a Celery worker while the socket
is held by a web process, over Redis). Its loop:

1. Wait up to ``attach_timeout_s`` for a runtime that declares the spec's ``runtime_kind`` and
   ``required_capabilities`` (``no_runtime`` otherwise), then send it ``runtime.assign``.
2. Turn the runtime's forwarded events into the task's events (through ``ctx.emit``: the run's
   buffer, so ordering, coalescing and secret masking are the same as for every kind) and its
   ``task.complete``/``task.fail`` into the :class:`TaskResult`.
3. If the runtime goes away (socket closed, or its row went stale) wait ``reconnect_grace_s``
   for a runtime to register on the session: one that names the task in ``resume`` goes on with
   it; another gets it assigned afresh. Past the grace the task fails with ``runtime_lost``.
   A newer runtime displacing the current one is the same case without the wait.
4. On ``ctx.cancel_requested`` (cancel, timeout, shutdown) send ``runtime.cancel`` and give the
   runtime ``ctx.cancel_grace_s`` to send its final frame.

Only frames relayed by the consumer of the runtime the task is currently with count: a late
frame from a displaced connection is dropped. The database is polled now and then as a safety
net for doorbells lost on the (at-most-once) channel layer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any, ClassVar

from channels.layers import get_channel_layer

from runtimes import protocol
from sessions.choices import TaskStatus
from sessions.runners.base import Runner, TaskContext, TaskResult

logger = logging.getLogger(__name__)

POLL_S = 1.0
"""While no runtime has the task: how often the database is asked for an attached one."""
LIVENESS_S = 5.0
"""While a runtime has the task: how often its attachment is re-checked in the database."""


class RemoteRunner(Runner):
    """Hands the task to the runtime attached to the session and relays what it reports."""

    kind = "remote"
    spec_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "runtime_kind": {
                "description": "What the runtime must declare in its kinds (default python).",
                "type": "string",
                "minLength": 1,
                "maxLength": protocol.MAX_NAME,
            },
            "attach_timeout_s": {
                "description": "How long a task waits for a runtime to attach (default 30).",
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 86400,
            },
            "reconnect_grace_s": {
                "description": "How long a task whose runtime disconnected waits for it to "
                "come back (default 30).",
                "type": "number",
                "minimum": 0,
                "maximum": 86400,
            },
            "required_capabilities": {
                "description": "Capabilities the runtime must declare true, e.g. can_execute_code.",
                "type": "array",
                "maxItems": 32,
                "items": {"type": "string", "minLength": 1, "maxLength": protocol.MAX_NAME},
            },
            "retry_safe": {"type": "boolean"},
        },
        "additionalProperties": False,
    }
    input_schema: ClassVar[dict[str, Any]] = {"type": "object"}  # the runtime validates it

    @classmethod
    def capabilities(cls, spec: dict[str, Any]) -> dict[str, bool]:
        """Those a python runtime has (it runs code), plus the ``can_*`` ones the spec
        requires of the runtime."""
        required = set(spec.get("required_capabilities") or [])
        caps = super().capabilities(spec)
        return {
            name: value
            or name in required
            or (name == "can_execute_code" and spec.get("runtime_kind", "python") == "python")
            for name, value in caps.items()
        }

    async def run(self, ctx: TaskContext) -> TaskResult:
        layer = get_channel_layer()
        if layer is None:
            return _failed("runner_error", "Remote agents need a channel layer (CHANNEL_LAYERS).")
        return await _Handoff(ctx, layer).run()


def _failed(code: str, message: str, **details: Any) -> TaskResult:
    return TaskResult(
        status=TaskStatus.FAILED, error={"code": code, "message": message, "details": details}
    )


def _agent_slug(task: Any) -> str:
    return str(task.agent.slug) if task is not None else ""


class _Handoff:
    """The state of one task's trip through remote runtimes (see the module docstring)."""

    def __init__(self, ctx: TaskContext, layer: Any) -> None:
        spec = ctx.spec
        self.ctx, self.layer = ctx, layer
        self.runtime_kind = str(spec.get("runtime_kind", "python"))
        self.required = list(spec.get("required_capabilities", []))
        self.attach_timeout_s = float(spec.get("attach_timeout_s", 30.0))
        self.grace_s = float(spec.get("reconnect_grace_s", 30.0))
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + self.attach_timeout_s
        self.cancel_deadline: float | None = None
        self.current: dict[str, str] | None = None  # {"channel", "runtime_id"} holding the task
        self.lost: str | None = None  # runtime_id of the last runtime that went away
        self.incompatible: list[str] = []
        self.finished_by_runtime = False
        self.inbox: collections.deque[dict[str, Any]] = collections.deque()
        self.wakeup = asyncio.Event()
        self.channel = ""
        self.assignment: dict[str, Any] = {}  # the task as runtimes receive it

    # Setup and teardown --------------------------------------------------------------------
    async def run(self) -> TaskResult:
        from sessions.execution import db_call

        ctx = self.ctx
        self.assignment = {
            "id": ctx.task_uuid,
            "session_id": ctx.session_uuid,
            "task_type": ctx.task_type,
            "input": ctx.input,
            "config": ctx.config,
            "agent": {
                "slug": await db_call(_agent_slug)(ctx.task),
                "kind": self.runtime_kind,  # what to run; the agent's own kind is "remote"
                "spec": ctx.spec,
            },
        }
        self.channel = await self.layer.new_channel("remote-runner.")
        groups = [protocol.task_group(ctx.task_uuid), protocol.runners_group(ctx.session_uuid)]
        listener = asyncio.ensure_future(self._listen())
        try:
            # Listen first, then look in the database (in _drive): a runtime attaching in
            # between is seen one way or the other.
            for group in groups:
                await self.layer.group_add(group, self.channel)
            return await self._drive()
        finally:
            if not self.finished_by_runtime:
                # Ended without the runtime's word (cancelled, lost, timed out): its later
                # frames for the task are stale, and the consumers must refuse them.
                with contextlib.suppress(Exception):
                    await self.layer.group_send(
                        protocol.runtimes_group(ctx.session_uuid),
                        {"type": "runtime.revoke", "task_id": ctx.task_uuid},
                    )
            for group in groups:
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(group, self.channel)
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener

    async def _listen(self) -> None:
        # One long receive loop, never a receive with a timeout: the Redis pub/sub layer
        # unsubscribes a channel whose receive was cancelled, losing what arrives next.
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("remote runner: channel receive failed", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            self.inbox.append(message)
            self.wakeup.set()

    # The loop ------------------------------------------------------------------------------
    async def _drive(self) -> TaskResult:
        ctx = self.ctx
        next_check = self.loop.time()
        while True:
            now = self.loop.time()
            if self.cancel_deadline is None and ctx.cancel_requested.is_set():
                if self.current is None:
                    return self._stopped()
                await self._send(self.current["channel"], "runtime.cancel")
                self.cancel_deadline = now + ctx.cancel_grace_s
            if self.cancel_deadline is not None and now >= self.cancel_deadline:
                return self._stopped()
            if self.current is None and now >= self.deadline:
                return self._gave_up()
            if now >= next_check:
                await self._check_database()
                next_check = now + (POLL_S if self.current is None else LIVENESS_S)
                continue
            waits = [next_check]
            if self.current is None:
                waits.append(self.deadline)
            if self.cancel_deadline is not None:
                waits.append(self.cancel_deadline)
            message = await self._next(min(waits) - now)
            if message is not None:
                result = await self._handle(message)
                if result is not None:
                    return result

    async def _next(self, timeout: float) -> dict[str, Any] | None:
        """The next channel message, or ``None`` after ``timeout`` seconds or a cancel request."""
        if not self.inbox:
            self.wakeup.clear()
            waits = [asyncio.ensure_future(self.wakeup.wait())]
            if self.cancel_deadline is None:
                waits.append(asyncio.ensure_future(self.ctx.cancel_requested.wait()))
            try:
                await asyncio.wait(
                    waits, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waits:
                    waiter.cancel()
        return self.inbox.popleft() if self.inbox else None

    async def _handle(self, message: dict[str, Any]) -> TaskResult | None:
        kind = message.get("type")
        if kind == "remote.attached":
            await self._attached(message)
            return None
        if kind == "remote.detached":
            if self.current is not None and message.get("channel") == self.current["channel"]:
                self._lose()
            return None
        if message.get("task_id") != self.ctx.task_uuid:
            return None
        if self.current is None or message.get("channel") != self.current["channel"]:
            logger.info("task %s: dropped %s from a runtime it is not with", self.ctx.task_uuid,
                        kind)  # fmt: skip
            return None
        if kind == "remote.events":
            for event in message.get("events", []):
                self.ctx.emit(event["type"], event["data"])
        elif kind == "remote.complete":
            self.finished_by_runtime = True
            return TaskResult(
                status=TaskStatus.SUCCEEDED,
                result=message.get("result"),
                usage=message.get("usage") or {},
            )
        elif kind == "remote.fail":
            self.finished_by_runtime = True
            return TaskResult(status=TaskStatus.FAILED, error=message.get("error"))
        return None

    # Runtimes coming and going -------------------------------------------------------------
    async def _attached(self, message: dict[str, Any]) -> None:
        channel, runtime_id = str(message.get("channel")), str(message.get("runtime_id"))
        if self.current is not None and channel == self.current["channel"]:
            return
        if not self._fits(message.get("kinds") or [], message.get("capabilities") or {}):
            if runtime_id not in self.incompatible:
                self.incompatible.append(runtime_id)
            if self.current is not None:  # it displaced the runtime we were with
                self._lose()
            return
        if self.ctx.task_uuid in (message.get("resume") or []):
            logger.info("task %s: runtime %s resumed it", self.ctx.task_uuid, runtime_id)
            self.current = {"channel": channel, "runtime_id": runtime_id}
            self.ctx.set_phase("running")
            if self.cancel_deadline is not None:
                await self._send(channel, "runtime.cancel")
        elif self.cancel_deadline is not None:
            self.current = None  # stopping: do not start the task on a new runtime
        else:
            await self._assign(channel, runtime_id)

    def _fits(self, kinds: list[str], capabilities: dict[str, Any]) -> bool:
        return protocol.compatible(
            kinds=list(kinds), capabilities=capabilities, kind=self.runtime_kind,
            required=self.required,
        )  # fmt: skip

    async def _assign(self, channel: str, runtime_id: str) -> None:
        message = {"type": "runtime.assign", "task": self.assignment, "resumed": False}
        await self.layer.send(channel, message)
        logger.info("task %s: assigned to runtime %s", self.ctx.task_uuid, runtime_id)
        self.current = {"channel": channel, "runtime_id": runtime_id}
        self.ctx.set_phase("assigned")

    def _lose(self) -> None:
        assert self.current is not None
        self.lost = self.current["runtime_id"]
        logger.info("task %s: runtime %s went away; waiting %g s for one to attach",
                    self.ctx.task_uuid, self.lost, self.grace_s)  # fmt: skip
        self.current = None
        self.deadline = self.loop.time() + self.grace_s
        self.ctx.set_phase("waiting_for_runtime")

    async def _check_database(self) -> None:
        from runtimes.selectors import runtime_attached, runtime_is_attached
        from sessions.execution import db_call

        try:
            if self.current is None:
                row = await db_call(runtime_attached)(session_id=self.ctx.session.pk)
                if row is None:
                    return
                if not self._fits(row.kinds, row.capabilities):
                    if row.runtime_id not in self.incompatible:
                        self.incompatible.append(row.runtime_id)
                elif self.cancel_deadline is None:
                    # A runtime is there but its doorbell never reached us (or it attached
                    # before the task started). If it already runs the task (a resume whose
                    # doorbell was lost) it ignores the repeated assignment.
                    await self._assign(row.channel_name, row.runtime_id)
            elif not await db_call(runtime_is_attached)(channel_name=self.current["channel"]):
                self._lose()
        except Exception:
            logger.warning("remote runner: database check failed", exc_info=True)

    # Outcomes ------------------------------------------------------------------------------
    async def _send(self, channel: str, kind: str) -> None:
        with contextlib.suppress(Exception):
            await self.layer.send(channel, {"type": kind, "task_id": self.ctx.task_uuid})

    def _stopped(self) -> TaskResult:
        """A stop was requested; the executor records ``cancelled``/``timed_out`` itself."""
        return _failed("cancelled", "The task was stopped before the runtime finished it.")

    def _gave_up(self) -> TaskResult:
        if self.lost is not None:
            return _failed(
                "runtime_lost",
                f"The runtime running this task went away and none came back within "
                f"{self.grace_s:g} s.",
                runtime_id=self.lost,
                reconnect_grace_s=self.grace_s,
            )
        return _failed(
            "no_runtime",
            f"No runtime that runs {self.runtime_kind!r} tasks attached to the session within "
            f"{self.attach_timeout_s:g} s.",
            runtime_kind=self.runtime_kind,
            required_capabilities=self.required,
            attach_timeout_s=self.attach_timeout_s,
            incompatible_runtimes=self.incompatible[-10:],
        )

"""The runner side of the debugger: :class:`DebugControl`, one per run (``ctx.debug``).

Runners call ``await ctx.checkpoint(kind=…, name=…, step_id=…, input=…)`` before each step
(a workflow component, a model call, a tool call, a notebook cell, a command). The call
returns at once unless the run must pause there:

* a debug run (``config.debug``, ``X-DEBUG-RUN``) meets a matching breakpoint (the task's,
  its agent's, or one in ``config.debug.breakpoints``), or is stepping (``step`` was the last
  command), or
* any run was asked to ``pause`` (stop after the current step, resumable; cancel stops now).

Then it flushes the run's events, parks the task in ``waiting`` with the pending step
(``debugger.debugging.debug_pause_enter``), and waits for a command: ``continue``, ``step``,
``abort``, optionally with an edited input that it returns in place of ``input``
(edit-and-continue). An unattended pause ends after ``pause_timeout_s`` with the configured
action. The task's wall-clock timeout does not run while it is paused (``paused_total_s``).
Concurrent steps (a workflow's parallel branches) pause one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from debugger import debugging
from debugger.config import DebugSettings
from debugger.models import Breakpoint, DebugAction

POLL_S = 1.0  # while paused, the command table is read this often (the doorbell is faster)
# A debug run re-reads its breakpoints at most this often (seconds), and at once after a
# doorbell (a breakpoint set on the task rings it): not one query per step.
BREAKPOINTS_TTL_S = 1.0


class DebugAborted(asyncio.CancelledError):
    """Raised by a checkpoint when the debugger aborted the run: the step does not run and the
    run unwinds like a cancelled one (the task ends ``cancelled``, code ``debug_aborted``)."""


class DebugControl:
    """Pause state of one run. ``db`` wraps a sync ORM callable into an awaitable
    (``sessions.execution.db_call``); ``flush`` writes the run's buffered events;
    ``request_stop(reason)`` stops the run (the executor's ``TaskControl.request``);
    ``stop`` is set when the run must stop (cancel, timeout, shutdown)."""

    def __init__(
        self, *, task: Any, worker: str, settings: DebugSettings, stop: asyncio.Event,
        request_stop: Callable[[str], None], flush: Callable[[], Awaitable[Any]],
        mask: Callable[[Any], Any], db: Callable[[Any], Any],
    ) -> None:  # fmt: skip
        self.task, self.worker, self.settings = task, worker, settings
        self.enabled = settings.enabled
        self.stop, self.request_stop = stop, request_stop
        self.flush, self.mask, self.db = flush, mask, db
        self.stepping = False
        self.pause_requested = False
        self.paused_since: float | None = None  # time.monotonic() of the current pause
        self.paused_total_s = 0.0  # seconds paused, finished pauses only
        self.aborted_at: str | None = None  # the step id an abort stopped at
        # Commands may predate the run (a queued task asked to pause): read them once.
        self._commands_maybe = True
        self._doorbell = asyncio.Event()
        self._lock = asyncio.Lock()
        self._breakpoints: list[Breakpoint] | None = None
        self._breakpoints_at = 0.0

    def ring(self) -> None:
        """A command or a breakpoint for this task was stored (from the executor's listener)."""
        self._commands_maybe = True
        self._breakpoints = None
        self._doorbell.set()

    async def poll(self) -> None:
        """Safety net for a lost doorbell (called with the lease renewal)."""
        if not self._commands_maybe and await self.db(debugging.debug_commands_pending)(
            task_id=self.task.pk
        ):
            self.ring()

    def paused_s(self) -> float:
        """Seconds this run has spent paused, the current pause included."""
        current = time.monotonic() - self.paused_since if self.paused_since is not None else 0
        return self.paused_total_s + current

    async def checkpoint(
        self, *, kind: str, name: str, step_id: str, input: Any,
        input_schema: dict[str, Any] | None = None, editable: bool = True,
    ) -> Any:  # fmt: skip
        """Before the step ``step_id`` (kind ``kind``, ``name``) runs with ``input``: pause if
        the run must, and return the input to run it with (edited, or ``input``).

        Raises:
            DebugAborted: the debugger aborted the run here.
            asyncio.CancelledError: the run was cancelled (or timed out) while paused.
        """
        if not (self.enabled or self.pause_requested or self.stepping or self._commands_maybe):
            return input  # the fast path of every run that is not being debugged
        async with self._lock:
            if self._commands_maybe:
                await self._take_running_commands()
            reason, breakpoint_ = await self._reason(kind, name, step_id)
            if reason is None:
                return input
            return await self._pause(
                kind=kind, name=name, step_id=step_id, input=input, reason=reason,
                breakpoint_=breakpoint_, input_schema=input_schema, editable=editable,
            )  # fmt: skip

    async def _take_running_commands(self) -> None:
        self._commands_maybe = False
        self._doorbell.clear()
        while command := await self.db(debugging.debug_command_take)(task_id=self.task.pk):
            if command.action == DebugAction.PAUSE:
                self.pause_requested = True
            # continue/step/abort are only accepted for a paused task; stale ones are spent.

    async def _reason(
        self, kind: str, name: str, step_id: str
    ) -> tuple[str | None, Breakpoint | None]:
        if self.pause_requested:
            return "pause", None
        if self.stepping:
            return "step", None
        if not self.enabled:
            return None, None
        for entry in self.settings.breakpoints:
            if _matches(entry["step_kind"], entry["name"], kind, name, step_id):
                return "breakpoint", None
        if self._breakpoints is None or time.monotonic() - self._breakpoints_at > BREAKPOINTS_TTL_S:
            self._breakpoints = await self.db(debugging.breakpoints_for_run)(task=self.task)
            self._breakpoints_at = time.monotonic()
        for breakpoint_ in self._breakpoints:
            if _matches(breakpoint_.step_kind, breakpoint_.name, kind, name, step_id):
                return "breakpoint", breakpoint_
        return None, None

    async def _pause(
        self, *, kind: str, name: str, step_id: str, input: Any, reason: str,
        breakpoint_: Breakpoint | None, input_schema: dict[str, Any] | None, editable: bool,
    ) -> Any:  # fmt: skip
        pending: dict[str, Any] = {
            "kind": debugging.DEBUG_PENDING, "step_id": step_id, "step_kind": kind,
            "name": name, "input": self.mask(input), "reason": reason, "editable": editable,
        }  # fmt: skip
        if breakpoint_ is not None:
            pending["breakpoint_id"] = str(breakpoint_.uuid)
        if input_schema is not None:
            pending["input_schema"] = input_schema
        await self.flush()  # the pause comes after every event the run emitted before it
        entered = await self.db(debugging.debug_pause_enter)(
            task=self.task, worker=self.worker, pending=pending
        )
        if not entered:
            if self.stop.is_set():
                raise asyncio.CancelledError
            return input
        if breakpoint_ is not None:
            await self.db(debugging.breakpoint_hit)(breakpoint_id=breakpoint_.pk)
        self.paused_since = time.monotonic()
        try:
            action, new_input, by = await self._wait_command(input)
        finally:
            self.paused_total_s += time.monotonic() - self.paused_since
            self.paused_since = None
        self.pause_requested = False
        self.stepping = action == DebugAction.STEP
        await self.db(debugging.debug_pause_leave)(
            task=self.task, worker=self.worker, step_id=step_id, action=action,
            edited=new_input is not input, by=by,
        )  # fmt: skip
        if action == DebugAction.ABORT:
            self.aborted_at = step_id
            self.request_stop("aborted")
            raise DebugAborted
        return new_input

    async def _wait_command(self, input: Any) -> tuple[str, Any, str | None]:
        """``(action, input to run with, who)`` once a command (or the pause timeout) came."""
        deadline = time.monotonic() + self.settings.pause_timeout_s
        while True:
            if self.stop.is_set():
                raise asyncio.CancelledError  # cancelled, timed out or shutting down
            self._doorbell.clear()
            command = await self.db(debugging.debug_command_take)(task_id=self.task.pk)
            if command is not None and command.action != DebugAction.PAUSE:
                user = command.created_by
                edited = command.input is not None
                by = user.get_username() if user is not None else None
                return command.action, (command.input if edited else input), by
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self.settings.on_pause_timeout, input, "timeout"
            waits = [asyncio.ensure_future(self._doorbell.wait()),
                     asyncio.ensure_future(self.stop.wait())]  # fmt: skip
            try:
                await asyncio.wait(waits, timeout=min(remaining, POLL_S),
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finally:
                for waiter in waits:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter


def _matches(bp_kind: str, bp_name: str, kind: str, name: str, step_id: str) -> bool:
    """A breakpoint matches a step when its kind is empty or the step's, and its name is empty,
    the step's name, or the step's id."""
    return bp_kind in ("", kind) and bp_name in ("", name, step_id)

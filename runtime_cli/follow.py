"""Watching a task to its end in the terminal: stream, print, status line, Ctrl-C.

Exit statuses (docs/cli.md): 0 when the task succeeded, 1 when it failed, was cancelled or
timed out (or the stream could not be followed), 130 after Ctrl-C. A first Ctrl-C while
following a task this invocation started asks the server to cancel it (``POST
/tasks/{id}/cancel``) and exits; a second one exits without waiting for that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

from runtime_cli.api import Api, ApiError
from runtime_cli.config import Config
from runtime_cli.render import EventPrinter, StatusLine, err_console
from runtime_cli.transport import TERMINAL, TaskStream

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


async def _interruptible(coro: Coroutine[Any, Any, None]) -> bool:
    """Run ``coro``; True if Ctrl-C (SIGINT) stopped it, False if it finished."""
    loop = asyncio.get_running_loop()
    job = asyncio.ensure_future(coro)
    interrupted: list[bool] = []

    def on_sigint() -> None:
        interrupted.append(True)
        job.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):  # no signal handlers here: KeyboardInterrupt
        pass
    try:
        await job
        return False
    except asyncio.CancelledError:
        if interrupted:
            return True
        raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)


def follow_task(
    config: Config,
    task_id: str,
    *,
    after: int = 0,
    json_lines: bool = False,
    transport: str = "auto",
    cancel_on_interrupt: bool = True,
    label: str | None = None,
) -> int:
    """Print the events of ``task_id`` after ``after`` until it ends; returns the exit status.

    Raises:
        ApiError: the stream was refused or lost for good.
    """
    label = label or f"task {task_id[:8]}"
    status_line = None
    if not json_lines and sys.stderr.isatty():
        status_line = StatusLine(err_console(), label)
    printer = EventPrinter(json_lines=json_lines, status_line=status_line)
    stream = TaskStream(
        config, task_id, after=after, transport=transport,
        on_notice=lambda text: printer.note(text, "yellow"),
    )  # fmt: skip
    started = time.monotonic()

    async def consume() -> None:
        async for event in stream:
            if event is None:
                printer.tick()
            else:
                printer.handle(event)

    try:
        interrupted = asyncio.run(_interruptible(consume()))
    except KeyboardInterrupt:  # platforms without loop signal handlers
        interrupted = True
    finally:
        if status_line is not None:
            status_line.hide()
    if interrupted:
        printer.close()
        if cancel_on_interrupt:
            _cancel(config, task_id, printer)
        return EXIT_INTERRUPTED
    status = printer.status
    if status not in TERMINAL:
        # The stream started after the terminal event (a late --after): ask for the status.
        with Api(config) as api:
            status = api.get(f"/api/v1/tasks/{task_id}")["status"]
        printer.status = status
    printer.finish(label=label, seconds=time.monotonic() - started, always=sys.stderr.isatty())
    return EXIT_OK if status == "succeeded" else EXIT_FAILED


def _cancel(config: Config, task_id: str, printer: EventPrinter) -> None:
    """Ask the server to cancel the task (Ctrl-C); a task that already ended is left alone."""
    try:
        with Api(config, timeout=15) as api:
            task = api.post(f"/api/v1/tasks/{task_id}/cancel")
        done = " (cancelled)" if task.get("status") == "cancelled" else ""
        printer.note(f"interrupted: asked the server to cancel task {task_id}{done}", "yellow")
    except ApiError as exc:
        if exc.code == "illegal_transition":
            printer.note(f"interrupted: task {task_id} had already finished", "yellow")
        else:
            printer.note(f"interrupted: could not cancel task {task_id}: {exc.line()}", "red")

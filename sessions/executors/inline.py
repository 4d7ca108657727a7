from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from sandboxes.services import sandbox_reap
from sessions.broadcast import EXECUTOR_GROUP
from sessions.execution import TaskControl, db_call, run_claimed_task, worker_name
from sessions.executors.threads import install_closing_pool
from sessions.models import Task
from sessions.runners import RUNNERS, get_runner_class
from sessions.services.tasks import task_claim_next, task_recover_expired, task_unclaim

SANDBOX_REAP_INTERVAL_S = 30.0
"""Seconds between sweeps for sandboxes whose session was deleted."""

logger = logging.getLogger(__name__)


def _import_runners() -> None:
    for kind in RUNNERS:
        try:
            get_runner_class(kind)
        except Exception:  # the task of that kind reports it when it runs
            logger.exception("could not import the %s runner", kind)


class Executor:
    """Runs up to ``concurrency`` tasks at once on the current event loop.

    ``start()`` recovers tasks whose lease expired, subscribes to the executor group and claims
    whatever is queued. Each claim is atomic (see ``task_claim_next``), so several executors
    (processes, machines) can share one database.
    """

    def __init__(self, *, concurrency: int | None = None) -> None:
        self.concurrency = concurrency or settings.TASK_CONCURRENCY
        self.worker = worker_name()
        self.running: dict[str, tuple[asyncio.Task[Any], TaskControl]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._fill_requested = asyncio.Event()
        self._background: list[asyncio.Task[Any]] = []
        self._started = False
        self._stopping = False
        self.completed = 0

    # Lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._stopping = False
        self.loop = asyncio.get_running_loop()
        # The ORM calls of the tasks run on the loop's default pool: close their threads'
        # connections when the loop ends it, not whenever the GC gets to them (threads.py).
        install_closing_pool(self.loop)
        # An asyncio.Event binds to the loop that first waits on it; a restart may be on a new one.
        self._fill_requested = asyncio.Event()
        try:
            await db_call(task_recover_expired)()
        except Exception:
            logger.exception("could not recover expired tasks at start-up")
        loop = self.loop
        self._background = [
            loop.create_task(self._filler(), name="executor-filler"),
            loop.create_task(self._listen(), name="executor-listener"),
            loop.create_task(self._sweeper(), name="executor-sweeper"),
        ]
        self.kick()
        logger.info("executor %s started (concurrency %d)", self.worker, self.concurrency)

    async def stop(self, *, drain_s: float = 0.0) -> None:
        """Stop claiming, let running tasks finish for up to ``drain_s`` seconds, then stop the
        rest with the reason ``shutdown``: each is requeued when retry-safe, else failed with
        ``worker_shutdown`` (see ``task_release``), so none is left running. Returns when every
        task this executor ran is settled (within ``TASK_CANCEL_GRACE_S`` + ~15 s)."""
        self._stopping = True
        for bg in self._background:
            bg.cancel()
        for bg in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await bg
        jobs = [job for job, _ in self.running.values()]
        if jobs and drain_s > 0:
            logger.info("executor %s: draining %d task(s) for %gs", self.worker, len(jobs), drain_s)
            await asyncio.wait(jobs, timeout=drain_s)
        for job, control in list(self.running.values()):
            control.request("shutdown")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(job, timeout=settings.TASK_CANCEL_GRACE_S + 15)
        self._started = False

    # Wake-ups ----------------------------------------------------------------------------------
    def kick(self) -> None:
        """Ask for a fill pass (claim queued tasks into free slots). Loop-thread only."""
        self._fill_requested.set()

    def kick_threadsafe(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.kick)

    def cancel_local(self, task_uuid: str) -> bool:
        """Stop a task this executor runs; returns whether it was running here."""
        entry = self.running.get(task_uuid)
        if entry is None:
            return False
        entry[1].request("cancelled")
        return True

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        channel = await layer.new_channel("executor.")
        await layer.group_add(EXECUTOR_GROUP, channel)
        try:
            while True:
                try:
                    message = await layer.receive(channel)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("executor notification receive failed", exc_info=True)
                    await asyncio.sleep(1)
                    continue
                if message.get("type") == "task.queued":
                    self.kick()
                elif message.get("type") == "task.cancel":
                    self.cancel_local(message.get("task_id", ""))
                elif message.get("type") == "task.debug":
                    entry = self.running.get(message.get("task_id", ""))
                    if entry is not None:
                        entry[1].ring()
        finally:
            with contextlib.suppress(Exception):
                await layer.group_discard(EXECUTOR_GROUP, channel)

    async def _sweeper(self) -> None:
        # Safety net only: lost notifications (pub/sub is at-most-once) and dead workers.
        interval = max(settings.TASK_LEASE_S / 2, 1.0)
        last_reap = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                await db_call(task_recover_expired)()
                for task_uuid in await db_call(_cancel_requested_among)(list(self.running)):
                    self.cancel_local(task_uuid)
                if time.monotonic() - last_reap >= SANDBOX_REAP_INTERVAL_S:
                    last_reap = time.monotonic()
                    await sandbox_reap()  # sandboxes of deleted sessions, idle-stopped ones
            except Exception:
                logger.warning("executor sweep failed", exc_info=True)
            self.kick()

    async def _filler(self) -> None:
        # Import every runner before the first claim, off the event loop: the first task of a
        # kind used to import its runner on the loop (the command kind took 9 s on a loaded
        # 2-core machine), stalling every lease renewal past its expiry meanwhile, and the
        # lease of the task just claimed ran out before its renewal even started.
        await asyncio.to_thread(_import_runners)
        while True:
            await self._fill_requested.wait()
            self._fill_requested.clear()
            if self._stopping:
                continue
            free = self.concurrency - len(self.running)
            if free <= 0:
                continue
            claim = asyncio.ensure_future(db_call(task_claim_next)(worker=self.worker, limit=free))
            try:
                claimed = await asyncio.shield(claim)
            except asyncio.CancelledError:
                # stop() cancelled us mid-claim. The claim commits in its thread anyway: give
                # back what it took, so nothing sits "running" on a stopped executor until its
                # lease expires.
                with contextlib.suppress(Exception):
                    for task in await claim:
                        await db_call(task_unclaim)(task=task, worker=self.worker)
                raise
            except Exception:
                logger.exception("claiming tasks failed")
                await asyncio.sleep(1)
                self.kick()
                continue
            for task in claimed:
                self._launch(task)
            if len(claimed) == free:
                self.kick()  # maybe more are waiting

    def _launch(self, task: Task) -> None:
        control = TaskControl()
        key = str(task.uuid)
        assert self.loop is not None
        job = self.loop.create_task(self._run(task, control), name=f"task-{key}")
        self.running[key] = (job, control)

    async def _run(self, task: Task, control: TaskControl) -> None:
        key = str(task.uuid)
        try:
            await run_claimed_task(task, worker=self.worker, control=control)
        except Exception:
            logger.exception("executor: task %s ended abnormally", key)
        finally:
            self.running.pop(key, None)
            self.completed += 1
            self.kick()  # a slot is free, and the session's next queued task may start

    def stats(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "running": len(self.running),
            "concurrency": self.concurrency,
            "started": self._started,
        }


def _cancel_requested_among(task_uuids: list[str]) -> list[str]:
    if not task_uuids:
        return []
    return [
        str(u)
        for u in Task.objects.filter(
            uuid__in=task_uuids, cancel_requested_at__isnull=False
        ).values_list("uuid", flat=True)
    ]


_executor: Executor | None = None


def get_executor() -> Executor:
    """The process-wide executor (created on first use, started by the ASGI app)."""
    global _executor
    if _executor is None:
        _executor = Executor()
    return _executor


def reset_executor() -> None:
    """Forget the singleton (tests)."""
    global _executor
    _executor = None

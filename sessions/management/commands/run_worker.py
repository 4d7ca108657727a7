from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from sessions.executors import Executor


class Command(BaseCommand):
    help = (
        "Run tasks in this process (TASK_EXECUTOR=worker). Woken by the channel layer when a "
        "task is queued. SIGTERM/SIGINT: stop claiming and let running tasks finish for up to "
        "--drain seconds, then hand the rest back (requeued when retry-safe, else failed with "
        "worker_shutdown); a second signal skips the wait."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, default=None)
        parser.add_argument(
            "--drain",
            type=float,
            default=settings.TASK_DRAIN_S,
            help="seconds running tasks may take to finish after SIGTERM (default TASK_DRAIN_S)",
        )

    def handle(self, *args: Any, concurrency: int | None, drain: float, **options: Any) -> None:
        asyncio.run(self._main(concurrency, drain))

    async def _main(self, concurrency: int | None, drain: float) -> None:
        executor = Executor(concurrency=concurrency)
        signals = 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopping: asyncio.Task[None] | None = None

        def on_signal() -> None:
            nonlocal signals, stopping
            signals += 1
            if signals == 1:
                self.stdout.write(f"stopping: draining running tasks for up to {drain:g}s")
                stopping = loop.create_task(executor.stop(drain_s=drain))
                stopping.add_done_callback(lambda _: stop.set())
            else:
                self.stdout.write("stopping now: handing running tasks back")
                for _, control in list(executor.running.values()):
                    control.request("shutdown")

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await executor.start()
        self.stdout.write(f"worker {executor.worker} running (concurrency {executor.concurrency})")
        await stop.wait()
        self.stdout.write("stopped")

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand

from sessions.executors import Executor


class Command(BaseCommand):
    help = (
        "Run tasks in this process (TASK_EXECUTOR=worker). Woken by the channel layer when a "
        "task is queued; stops on SIGTERM/SIGINT, leaving running tasks to lease recovery."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--concurrency", type=int, default=None)

    def handle(self, *args: Any, concurrency: int | None, **options: Any) -> None:
        asyncio.run(self._main(concurrency))

    async def _main(self, concurrency: int | None) -> None:
        executor = Executor(concurrency=concurrency)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await executor.start()
        self.stdout.write(f"worker {executor.worker} running (concurrency {executor.concurrency})")
        await stop.wait()
        self.stdout.write("stopping: cancelling running tasks")
        await executor.stop(cancel_running=True)

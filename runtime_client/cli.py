"""``python -m runtime_client``: attach this machine to a session as a remote runtime and run its
``python`` tasks on a local Jupyter kernel (docs/remote-runtimes.md).

    python -m runtime_client --url ws://localhost:8000 --session <uuid> [--token KEY]
        [--runtime-id ID] [--workdir DIR] [--no-reconnect] [-v]

The token defaults to the ``RUNTIME_TOKEN`` environment variable (an API key with the
``tasks:write`` scope). Exit status: 0 when stopped (Ctrl-C) or displaced by a newer runtime,
1 when the connection dropped with ``--no-reconnect``, 2 when the server refused the runtime.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from runtime_client.client import Emit, RuntimeClient, RuntimeClientError, default_runtime_id

logger = logging.getLogger("runtime_client")


class KernelExecutor:
    """Runs ``python`` tasks on one local kernel, started at the first task and kept between
    tasks (variables persist, like the server's notebook runtime), in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.kernel: Any = None

    async def __call__(
        self, task: dict[str, Any], emit: Emit, cancel: asyncio.Event
    ) -> dict[str, Any]:
        # Imported here: the kernel machinery (jupyter_client, zmq) is only needed once a task
        # arrives, and a client with a custom executor never needs it.
        from runtime_client.kernel import LocalKernel
        from runtime_client.notebook import run_python_task

        kind = (task.get("agent") or {}).get("kind", "python")
        if kind != "python":
            return {"status": "failed", "result": None, "usage": {}, "error": {
                "code": "unsupported_kind", "message": f"This runtime runs python tasks, not "
                f"{kind!r}.", "details": {"kind": kind}}}  # fmt: skip
        if self.kernel is None:
            self.kernel = LocalKernel(cwd=str(self.workdir))
            await self.kernel.start()
        return await run_python_task(
            self.kernel, task.get("input") or {}, emit, cancel=cancel, workspace=self.workdir
        )

    async def close(self) -> None:
        if self.kernel is not None:
            with contextlib.suppress(Exception):
                await self.kernel.shutdown()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runtime_client",
        description="Attach to a session as a remote runtime and run its python tasks locally.",
    )
    p.add_argument("--url", required=True, help="the server, e.g. ws://localhost:8000")
    p.add_argument("--session", required=True, help="the session id (UUID)")
    p.add_argument("--token", default=os.environ.get("RUNTIME_TOKEN"),
                   help="API key with tasks:write (default: $RUNTIME_TOKEN)")  # fmt: skip
    p.add_argument("--runtime-id", default=default_runtime_id(),
                   help="this runtime's name (default: <hostname>-<pid>)")  # fmt: skip
    p.add_argument("--workdir", type=Path, default=Path.cwd(),
                   help="the kernel's working directory (default: the current one)")  # fmt: skip
    p.add_argument("--no-reconnect", action="store_true", help="exit when the connection drops")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    return p


async def serve(args: argparse.Namespace) -> int:
    """Run the client until it stops; the process exit status (see the module docstring)."""
    executor = KernelExecutor(args.workdir.resolve())
    client = RuntimeClient(
        args.url,
        args.token,
        args.session,
        runtime_id=args.runtime_id,
        executor=executor,
        kinds=["python"],
        capabilities={"can_execute_code": True},
        reconnect=not args.no_reconnect,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(client.stop()))
    try:
        reason = await client.run()
    except RuntimeClientError as exc:
        # The server's reason is the whole story: no traceback.
        logger.error("the server refused this runtime: %s", exc)  # noqa: TRY400
        return 2
    finally:
        await executor.close()
    logger.info("stopped: %s", reason)
    return 1 if reason == "disconnected" else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.token:
        print("a token is needed: --token or RUNTIME_TOKEN", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(serve(args))

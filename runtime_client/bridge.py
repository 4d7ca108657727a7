"""The kernel bridge: keeps a Jupyter kernel alive inside a sandbox, served on a Unix socket.

The server-side ``python`` agent kind starts ``python3 -m runtime_client.bridge --socket
/workspace/.agent/kernel/bridge.sock`` as a background process of the session's sandbox (the
sandbox has no network, and its loopback is its own, so the kernel's ZeroMQ ports cannot be
reached from outside; a Unix socket on the workspace bind can). The bridge outlives tasks, so
variables persist across a session's tasks, and it dies with the sandbox.

Protocol: JSON lines, one object per line, both ways. On connect the bridge sends
``{"type": "hello", "started": n, "alive": bool, "pid": p}``. Requests carry an ``id``:

* ``{"op": "execute", "id", "code"}`` → ``{"id", "msg": {"msg_type", "content", "metadata"}}``
  for each IOPub message and the reply (see ``runtime_client.kernel``), then
  ``{"id", "done": true, "started": n}``; a kernel death gives
  ``{"id", "done": true, "error": {"code": "kernel_died", "message"}}``.
* ``{"op": "interrupt"}`` (no answer); ``{"op": "ensure", "id"}`` (start a kernel unless one
  is alive; the answer's ``fresh`` says whether it did); ``{"op": "restart", "id"}``;
  ``{"op": "ping", "id"}`` (→ ``{"id", "done": true, "alive", "started"}``);
  ``{"op": "shutdown", "id"}`` (stops the kernel, answers, then the bridge exits).

Several connections may be open (a new worker after a crash, a cancel from another process);
executions are serialised by the kernel's lock. The socket is created mode 0600.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any

from runtime_client.kernel import MAX_FRAME_BYTES, KernelDied, LocalKernel


class Bridge:
    def __init__(self, kernel: LocalKernel) -> None:
        self.kernel = kernel
        self.stopping = asyncio.Event()
        self.writers: set[asyncio.StreamWriter] = set()

    async def serve(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self.handle, path=path, limit=MAX_FRAME_BYTES)
        finally:
            os.umask(old)
        async with server:
            await self.stopping.wait()
            for writer in list(self.writers):  # ends each handler's read loop cleanly
                writer.close()
            await asyncio.sleep(0)
        await self.kernel.shutdown()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lock = asyncio.Lock()  # one writer per connection: frames of two requests never interleave

        async def send(frame: dict[str, Any]) -> None:
            async with lock:
                writer.write(json.dumps(frame, default=str).encode() + b"\n")
                await writer.drain()

        running: set[asyncio.Task[None]] = set()
        self.writers.add(writer)
        try:
            await send({"type": "hello", "started": self.kernel.started,
                        "alive": await self.kernel.is_alive(), "pid": os.getpid()})  # fmt: skip
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    op = request["op"]
                except (ValueError, KeyError, TypeError):
                    continue
                if op == "interrupt":
                    await self.kernel.interrupt()
                elif op == "execute":
                    task = asyncio.ensure_future(self.execute(request, send))
                    running.add(task)
                    task.add_done_callback(running.discard)
                else:
                    await self.control(op, request.get("id"), send)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            # A client that went away mid-cell (its task was cancelled hard, or its worker died)
            # will never read the outputs: stop the cell, keep the kernel and its variables.
            if running:
                await self.kernel.interrupt()
            for task in running:
                task.cancel()
            self.writers.discard(writer)
            writer.close()

    async def execute(self, request: dict[str, Any], send: Any) -> None:
        rid = request.get("id")
        try:
            async for msg in self.kernel.execute(str(request.get("code", ""))):
                await send({"id": rid, "msg": msg})
            await send({"id": rid, "done": True, "started": self.kernel.started})
        except KernelDied as exc:
            await send({"id": rid, "done": True, "started": self.kernel.started,
                        "error": {"code": "kernel_died", "message": exc.reason}})  # fmt: skip

    async def control(self, op: str, rid: Any, send: Any) -> None:
        try:
            fresh = False
            if op == "ensure":
                fresh = await self.kernel.ensure()
            elif op == "restart":
                await self.kernel.restart()
            elif op == "shutdown":
                await self.kernel.shutdown()
                self.stopping.set()
            elif op != "ping":
                error = {"code": "bad_request", "message": f"unknown op {op!r}"}
                await send({"id": rid, "done": True, "error": error})
                return
            await send({"id": rid, "done": True, "started": self.kernel.started,
                        "alive": await self.kernel.is_alive(), "fresh": fresh})  # fmt: skip
        except KernelDied as exc:
            await send({"id": rid, "done": True,
                        "error": {"code": "kernel_died", "message": exc.reason}})  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runtime_client.bridge")
    parser.add_argument("--socket", required=True, help="Unix socket path to serve on")
    parser.add_argument("--cwd", default=None, help="the kernel's working directory")
    args = parser.parse_args(argv)
    # IPython and Jupyter write profiles and connection files under HOME/XDG dirs; the sandbox's
    # home is read-only, its /tmp is private and writable.
    dirs = {"IPYTHONDIR": ".ipython", "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
            "JUPYTER_DATA_DIR": "jupyter-data", "MPLCONFIGDIR": "matplotlib"}  # fmt: skip
    for name, sub in dirs.items():
        os.environ.setdefault(name, os.path.join("/tmp", sub))  # noqa: S108 - the sandbox's /tmp

    async def run() -> None:
        bridge = Bridge(LocalKernel(cwd=args.cwd))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, bridge.stopping.set)
        await bridge.serve(args.socket)

    asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()

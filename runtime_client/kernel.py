"""Jupyter kernels behind one small async interface, used by every ``python`` runtime.

:class:`LocalKernel` runs an ipykernel in this process's machine through ``jupyter_client``
(the sandbox bridge and the remote runtime client both use it); :class:`BridgeKernel` talks to a
:class:`LocalKernel` running inside a sandbox through ``runtime_client.bridge`` (the server-side
``python`` agent kind uses it). Both expose the same calls, so ``runtime_client.notebook`` runs
cells the same way wherever the kernel is.

``execute(code)`` yields the kernel's IOPub messages for that request as
``{"msg_type", "content", "metadata"}`` dicts (``stream``, ``display_data``,
``update_display_data``, ``execute_result``, ``error``, ``clear_output``, ``execute_input``;
the Jupyter messaging spec, https://jupyter-client.readthedocs.io/en/stable/messaging.html) and
ends with one ``{"msg_type": "execute_reply", "content"}``. If the kernel process dies meanwhile
it raises :class:`KernelDied`; the next ``execute`` starts a fresh kernel.

This module must not import Django: the runtime client runs on users' machines and the bridge
inside sandboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import queue
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

POLL_S = 0.2  # how often a waiting execute checks that the kernel is still alive
# After the cell's execute_reply, how long IOPub may stay silent before the cell's ``idle``
# status is taken as lost (see ``_Gaps``); the reply is sent when the cell is done, so only
# output already queued can still arrive.
IDLE_GRACE_S = 10.0
STARTUP_TIMEOUT_S = 60.0
MAX_FRAME_BYTES = 256 * 1024 * 1024  # one bridge line (a message with a large image)


class KernelDied(Exception):
    """The kernel process ended while it was starting or executing (``reason`` says how)."""

    def __init__(self, reason: str = "The kernel died.") -> None:
        super().__init__(reason)
        self.reason = reason


class Kernel(Protocol):
    """What ``runtime_client.notebook`` needs from a kernel."""

    started: int  # how many kernels were started so far (a restart or a death adds one)

    async def ensure(self) -> bool:
        """Start a kernel unless one is alive; True when a fresh one was started."""

    def execute(self, code: str) -> AsyncIterator[dict[str, Any]]: ...

    async def interrupt(self) -> None: ...

    async def restart(self) -> None: ...

    async def shutdown(self) -> None: ...


class LocalKernel:
    """An ipykernel started with ``jupyter_client``'s ``AsyncKernelManager`` on this machine.

    Args:
        cwd: the kernel's working directory (default: this process's).
        kernel_name: a kernelspec name; ``python3`` is ipykernel's built-in spec (this
            interpreter), so no kernelspec needs installing.
        startup_timeout_s: how long the kernel may take to answer ``kernel_info``.
    """

    def __init__(
        self,
        *,
        cwd: str | None = None,
        kernel_name: str = "python3",
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> None:
        self.cwd = cwd
        self.kernel_name = kernel_name
        self.startup_timeout_s = startup_timeout_s
        self.started = 0
        self._km: Any = None
        self._kc: Any = None
        self._context: Any = None
        self._lock = asyncio.Lock()  # one execute at a time; interrupt never waits for it

    async def is_alive(self) -> bool:
        return self._km is not None and bool(await self._km.is_alive())

    async def start(self) -> bool:
        """Start a kernel unless one is alive; returns whether one was started.

        Raises:
            KernelDied: it did not come up within ``startup_timeout_s``.
        """
        if await self.is_alive():
            return False
        import zmq.asyncio
        from jupyter_client.manager import AsyncKernelManager

        await self._discard()
        # IPC transport: the kernel's sockets are files in its runtime dir, not loopback TCP
        # ports another local user could reach (and no port races between sandboxes).
        # The ipc "ip" is a path prefix, relative to each process's cwd unless absolute: keep
        # the sockets in the private runtime dir, never in the kernel's working directory.
        from jupyter_core.paths import jupyter_runtime_dir

        runtime = jupyter_runtime_dir()
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        prefix = os.path.join(runtime, f"kernel-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        km = AsyncKernelManager(kernel_name=self.kernel_name, transport="ipc", ip=prefix)
        if self.kernel_name == "python3" and km.kernel_spec is not None:
            # ipykernel's own spec, started through launch_kernel() below (lossless IOPub).
            km.kernel_spec.argv = kernel_argv()
        # An unbounded receive queue: IOPub is PUB/SUB, which drops messages once the
        # subscriber's queue (1,000 by default) is full, i.e. a cell printing in a tight loop
        # would lose output whenever we read slower than it prints. The kernel's send queue
        # has the same limit; launch_kernel() lifts it.
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.RCVHWM, 0)
        try:
            await km.start_kernel(cwd=self.cwd or os.getcwd())
            kc = km.client(context=context)
            kc.start_channels()
            await kc.wait_for_ready(timeout=self.startup_timeout_s)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await km.shutdown_kernel(now=True)
            context.destroy(linger=0)
            raise KernelDied(f"The kernel did not start: {exc}") from exc
        self._km, self._kc, self._context = km, kc, context
        self.started += 1
        return True

    async def ensure(self) -> bool:
        """Like :meth:`start`, serialised with executions."""
        async with self._lock:
            return await self.start()

    async def execute(self, code: str) -> AsyncIterator[dict[str, Any]]:
        """Run ``code``; yield its IOPub messages, then the ``execute_reply`` (see module doc).

        Kernel messages that never arrived (:class:`_Gaps`) are reported by one extra
        ``stream`` message on ``stderr`` just before the reply (``metadata.lost_messages``),
        so a loss is never silent; a lost ``idle`` status ends the wait ``IDLE_GRACE_S`` after
        the reply instead of never.
        """
        async with self._lock:
            await self.start()
            kc = self._kc
            loop = asyncio.get_running_loop()
            msg_id = kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
            gaps = _Gaps()
            reply: dict[str, Any] | None = None
            heard = loop.time()
            idle = False
            while not idle:
                try:
                    msg = await kc.get_iopub_msg(timeout=POLL_S)
                except queue.Empty:
                    await self._check_alive()
                    if reply is None:
                        reply = await _shell_reply(kc, msg_id, gaps, timeout=0)
                    elif loop.time() - heard > IDLE_GRACE_S:
                        gaps.idle_lost = True
                        break
                    continue
                heard = loop.time()
                ours = msg.get("parent_header", {}).get("msg_id") == msg_id
                gaps.see(msg, ours=ours)
                if not ours:
                    continue
                kind = msg["msg_type"]
                if kind == "status":
                    idle = msg["content"].get("execution_state") == "idle"
                    continue
                yield {"msg_type": kind, "content": msg["content"],
                       "metadata": msg.get("metadata") or {}}  # fmt: skip
            while reply is None:
                reply = await _shell_reply(kc, msg_id, gaps, timeout=POLL_S)
                if reply is None:
                    await self._check_alive()
            if (notice := gaps.notice()) is not None:
                yield notice
            yield reply

    async def _check_alive(self) -> None:
        if not await self.is_alive():
            await self._discard()
            raise KernelDied("The kernel process ended while it was running the cell.")

    async def interrupt(self) -> None:
        """SIGINT to the kernel: the running cell raises KeyboardInterrupt, state is kept."""
        if self._km is not None:
            with contextlib.suppress(Exception):
                await self._km.interrupt_kernel()

    async def restart(self) -> None:
        """A fresh kernel (all variables gone)."""
        await self._discard()
        await self.start()

    async def shutdown(self) -> None:
        await self._discard()

    async def _discard(self) -> None:
        km, kc, self._km, self._kc = self._km, self._kc, None, None
        context, self._context = self._context, None
        if kc is not None:
            with contextlib.suppress(Exception):
                kc.stop_channels()
        if context is not None:
            context.destroy(linger=0)
        if km is not None:
            with contextlib.suppress(Exception):
                await km.shutdown_kernel(now=True)  # also removes its connection file


async def _shell_reply(
    kc: Any, msg_id: str, gaps: _Gaps, *, timeout: float
) -> dict[str, Any] | None:
    """The ``execute_reply`` to ``msg_id`` if it arrives within ``timeout`` seconds (other
    shell messages are skipped), else None."""
    while True:
        try:
            msg = await kc.get_shell_msg(timeout=timeout)
        except queue.Empty:
            return None
        gaps.see(msg, ours=False)
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            return {"msg_type": "execute_reply", "content": msg["content"], "metadata": {}}


class _Gaps:
    """Counts the kernel's messages of one execution that never arrived.

    jupyter_client's ``Session`` names each message ``<session>_<pid>_<n>``, ``n`` counting
    every message the kernel process sends on any channel. From the cell's ``busy`` status on,
    the numbers seen on IOPub and shell must be contiguous (this client sends nothing on
    control or stdin during an execute); a hole is a message dropped on the way, e.g. at a
    ZeroMQ high-water mark. Forked subprocesses (another ``<pid>``) are not counted.
    """

    def __init__(self) -> None:
        self.prefix: str | None = None  # <session>_<pid> of the kernel process
        self.start: int | None = None  # the number of the cell's first message
        self.numbers: set[int] = set()
        self.idle_lost = False

    def see(self, msg: dict[str, Any], *, ours: bool) -> None:
        prefix, _, number = str((msg.get("header") or {}).get("msg_id", "")).rpartition("_")
        if not number.isdigit():
            return
        if self.prefix is None:
            if not ours:  # before the cell's first message: earlier cells' leftovers
                return
            self.prefix, self.start = prefix, int(number)
        if prefix == self.prefix:
            self.numbers.add(int(number))

    def lost(self) -> int:
        if self.start is None:
            return 0
        seen = [n for n in self.numbers if n >= self.start]
        return max(seen) - self.start + 1 - len(seen)

    def notice(self) -> dict[str, Any] | None:
        """A ``stream`` message on ``stderr`` saying what was lost, or None."""
        lost = self.lost()
        if not lost and not self.idle_lost:
            return None
        what = f"{lost} output message(s) of this cell were lost" if lost else "output was lost"
        text = f"[runtime] {what} on the way from the kernel; the output above is incomplete.\n"
        return {"msg_type": "stream", "content": {"name": "stderr", "text": text},
                "metadata": {"lost_messages": lost, "idle_lost": self.idle_lost}}  # fmt: skip


def kernel_argv() -> list[str]:
    """The command that starts an ipykernel through :func:`launch_kernel` (jupyter_client
    fills in ``{connection_file}``). This package is imported from where it is now, never from
    the kernel's working directory."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (f"import sys; sys.path[0] = {root!r}; "
            "from runtime_client.kernel import launch_kernel; launch_kernel()")  # fmt: skip
    return [sys.executable, "-c", code, "-f", "{connection_file}"]


def launch_kernel() -> None:
    """The kernel process: ipykernel's ``IPKernelApp`` with an IOPub socket that never drops.

    IOPub is a ZeroMQ (X)PUB socket, and a publisher drops every message it cannot queue once
    its send high-water mark (1,000 messages by default) is reached. A cell printing in a tight
    loop while its reader lagged (a busy machine) lost hundreds of consecutive lines, and
    sometimes the cell's ``idle`` status, after which the execute waited forever. Without a
    high-water mark the messages wait in the kernel until read; the reader has none either
    (:meth:`LocalKernel.start`), so output is only ever delayed.
    """
    import zmq
    from ipykernel.kernelapp import IPKernelApp

    class LosslessKernelApp(IPKernelApp):
        def init_iopub(self, context: zmq.Context[Any]) -> None:
            context.setsockopt(zmq.SNDHWM, 0)  # the default of sockets created from here on
            try:
                super().init_iopub(context)  # creates and binds the IOPub socket
            finally:
                context.sockopts.pop(zmq.SNDHWM, None)

    LosslessKernelApp.launch_instance()


Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class BridgeKernel:
    """A :class:`LocalKernel` inside a sandbox, reached through ``runtime_client.bridge``.

    ``connect`` opens a stream to the bridge (the python runner connects to its Unix socket).
    The protocol is JSON lines; see ``runtime_client.bridge``. A lost connection during an
    execute raises :class:`KernelDied` (the sandbox, and with it the kernel, is gone).
    """

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._queues: dict[int, asyncio.Queue[dict[str, Any] | None]] = {}
        self._ids = itertools.count(1)
        self.hello: dict[str, Any] = {}
        self.started = 0

    async def open(self) -> dict[str, Any]:
        """Connect and read the bridge's hello (``{"type": "hello", "started", "alive"}``)."""
        reader, writer = await self._connect()
        line = await reader.readline()
        if not line:
            writer.close()
            raise KernelDied("The kernel bridge closed the connection.")
        self.hello = json.loads(line)
        self.started = int(self.hello.get("started", 0))
        self._writer = writer
        self._reader_task = asyncio.ensure_future(self._read(reader))
        return self.hello

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                frame = json.loads(line)
                if not isinstance(frame, dict):
                    continue
                if "started" in frame:
                    self.started = int(frame["started"])
                q = self._queues.get(frame.get("id", -1))
                if q is not None:
                    q.put_nowait(frame)
        except (ValueError, OSError, asyncio.IncompleteReadError):
            pass  # a broken bridge: every waiting execute ends with KernelDied below
        finally:
            for q in self._queues.values():
                q.put_nowait(None)

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._writer is None or self._writer.is_closing():
            raise KernelDied("The kernel bridge is not connected.")
        self._writer.write(json.dumps(frame).encode() + b"\n")
        try:
            await self._writer.drain()
        except OSError as exc:
            raise KernelDied("The kernel bridge went away.") from exc

    async def _request(self, frame: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        request_id = next(self._ids)
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._queues[request_id] = q
        if self._reader_task is None or self._reader_task.done():
            q.put_nowait(None)
        try:
            await self._send({**frame, "id": request_id})
            while True:
                item = await q.get()
                if item is None:
                    raise KernelDied("The sandbox running the kernel went away.")
                yield item
                if item.get("done"):
                    return
        finally:
            self._queues.pop(request_id, None)

    async def execute(self, code: str) -> AsyncIterator[dict[str, Any]]:
        async for frame in self._request({"op": "execute", "code": code}):
            if "error" in frame:
                raise KernelDied(str(frame["error"].get("message", "The kernel died.")))
            if "msg" in frame:
                yield frame["msg"]

    async def _call(self, op: str) -> dict[str, Any]:
        async for frame in self._request({"op": op}):
            if frame.get("done"):
                if "error" in frame:
                    raise KernelDied(str(frame["error"].get("message", "")))
                return frame
        raise KernelDied("The kernel bridge closed the connection.")  # pragma: no cover

    async def interrupt(self) -> None:
        await self._send({"op": "interrupt", "id": 0})

    async def restart(self) -> None:
        await self._call("restart")

    async def ensure(self) -> bool:
        return bool((await self._call("ensure")).get("fresh"))

    async def ping(self) -> dict[str, Any]:
        """``{"alive": bool, "started": n}`` of the kernel behind the bridge."""
        return await self._call("ping")

    async def shutdown(self) -> None:
        """Stop the kernel and the bridge process."""
        with contextlib.suppress(KernelDied):
            await self._call("shutdown")
        await self.close()

    async def close(self) -> None:
        """Close this connection; the bridge and its kernel keep running for the next task."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task

"""The running side of the ``local`` backend: output streaming, timeouts and process-tree kill.

One :class:`LocalExecution` wraps one asyncio subprocess started with
``loop.subprocess_exec`` and a small :class:`_StreamProtocol`:

* Output: asyncio reads each pipe as soon as data is available; the protocol queues the chunks
  and the iterator yields them immediately (split into ≤ :data:`CHUNK_BYTES` events). When the
  consumer lags, reading pauses above :data:`HIGH_WATER_BYTES` so the pipes apply back-pressure.
* Exit: ``process_exited`` fires when the direct child exits, independently of the pipes. If
  something still holds the pipes :data:`DRAIN_S` seconds later (a background process in the
  unisolated tier), the leftovers are killed.
* Killing is tier-specific (:class:`TreeKiller`): the bubblewrap tier signals processes inside
  the sandbox's pid namespace and finally SIGKILLs the namespace's init (the kernel then kills
  every process in the namespace); the unisolated tier uses ``killpg`` on the session.

Reaping (research note, gotcha 3): the outer bwrap is our child and asyncio's child watcher
reaps it. When the command exits normally, the outer bwrap learns the exit status from its
namespace init through an eventfd and exits *without reaping that init*, which is therefore
orphaned. So the server makes itself a child subreaper (:func:`ensure_subreaper`, once, on the
first bubblewrap exec): the orphaned init is re-parented to us and :class:`NamespaceKiller`
reaps exactly that process through its pidfd (``waitid(P_PIDFD)``), never with a blind
``waitpid(-1)`` that could steal another subprocess's status. Side effect: other orphans of the
server's own subprocess trees are re-parented to the server too and are not reaped by it; in
Docker the image's PID 1 is ``tini -s``, which reaps everything else.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import Literal

from sandboxes.backends._cgroup import ExecCgroup
from sandboxes.base import ExecEvent, Execution

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
"""Largest ``data`` of one stdout/stderr event, in bytes."""
HIGH_WATER_BYTES = 1024 * 1024
"""Queued output (bytes) above which we stop reading the pipes until the consumer catches up."""
LOW_WATER_BYTES = 256 * 1024
"""Queued output (bytes) below which reading resumes."""
DRAIN_S = 0.5
"""Seconds to keep reading after the process exited before killing whoever holds the pipes."""
TIMEOUT_GRACE_S = 1.0
"""SIGTERM→SIGKILL grace in seconds when ``wall_timeout_s`` expires."""
KILL_WAIT_S = 5.0
"""Seconds to wait for the tree to vanish after SIGKILL before the last-resort kill."""


REAP_TIMEOUT_S = 5.0
"""Seconds to keep trying to reap an orphaned namespace init after its bwrap exited."""
_PR_SET_CHILD_SUBREAPER = 36
_subreaper: bool | None = None
_background: set[asyncio.Task[None]] = set()  # strong refs to fire-and-forget reap tasks
_closers: set[asyncio.Task[None]] = set()  # strong refs to close-after-kill tasks
# pidfd → pid of orphaned namespace inits not reaped yet. Swept again on every exec, so an init
# whose reap task died with its event loop (e.g. a test's loop) is still reaped later.
_pending: dict[int, int] = {}
_pending_lock = threading.Lock()  # event loops may run in several threads (double close = bug)


def ensure_subreaper() -> bool:
    """Make this process a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), once.

    Returns whether it is one. Orphans of our descendants are then re-parented to us instead of
    PID 1, which lets us reap the sandbox inits we know about.
    """
    global _subreaper
    if _subreaper is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            ok = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            ok = False
        if not ok:
            logger.warning("cannot become a child subreaper: sandbox inits are left to PID 1")
        _subreaper = ok
    return _subreaper


def reap_adopted(pid: int, timeout_s: float = REAP_TIMEOUT_S) -> None:
    """Blocking variant for the capability probe: reap the orphaned init ``pid`` by pid."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] != 0:
                return
        except ChildProcessError:
            return  # not (or no longer) our child
        time.sleep(0.01)


def sweep_orphans() -> None:
    """Reap every pending orphaned init that has exited (non-blocking, by pidfd)."""
    with _pending_lock:
        for pidfd in list(_pending):
            try:
                if os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG) is None:
                    continue  # still running
            except ChildProcessError:
                pass  # reaped by its bwrap (kill path), or not ours
            del _pending[pidfd]
            os.close(pidfd)


def _ppid(pid: int) -> int | None:
    """Parent pid of ``pid`` from ``/proc/<pid>/stat`` (``None`` if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The comm field may contain spaces and parentheses: parse after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def descendants(pid: int) -> list[int]:
    """Host pids of every descendant of ``pid`` (children first), from one ``/proc`` scan."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            parent = _ppid(int(entry.name))
            if parent is not None:
                children[parent].append(int(entry.name))
    out: list[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        current = todo.pop(0)
        out.append(current)
        todo.extend(children.get(current, ()))
    return out


class TreeKiller:
    """How to signal one execution's process tree; subclassed per tier."""

    def __init__(self, pid: int) -> None:
        self.pid = pid  # host pid of the outermost process (our direct child)
        self.exited = False  # set by the execution when the outer process has exited

    def term(self) -> None:
        """Ask the tree to stop (SIGTERM)."""

    def kill(self) -> None:
        """SIGKILL the whole tree."""

    def last_resort(self) -> None:
        """SIGKILL the outer process (used when :meth:`kill` did not end it)."""
        if not self.exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def on_exit(self) -> None:
        """Called once when the outer process has exited (from the event loop)."""
        self.exited = True

    def close(self) -> None:
        """Release resources (pidfds)."""


class NamespaceKiller(TreeKiller):
    """Bubblewrap tier: the command runs in its own pid namespace whose init is ``init_pid``.

    ``term`` sends SIGTERM to every process in the namespace except its init (bwrap's init has
    no SIGTERM handler, and a pid-namespace init ignores unhandled signals from outside); this
    covers the command's process group and grandchildren that called ``setsid()``.
    ``kill`` SIGKILLs the init through a pidfd (no pid-reuse race): when a pid namespace's
    init dies the kernel kills every process in it, and the outer bwrap then exits.
    """

    def __init__(self, pid: int, init_pid: int | None) -> None:
        super().__init__(pid)
        self.init_pid = init_pid
        self.init_pidfd: int | None = None
        if init_pid is not None:
            try:
                fd = os.pidfd_open(init_pid)
            except OSError:
                fd = None
            # The pidfd pins a process; make sure it is really our bwrap's child (or, if a fast
            # command already finished, the orphan re-parented to us, the subreaper) and not a
            # reused pid before we ever signal or reap through it.
            if fd is not None and _ppid(init_pid) not in (pid, os.getpid()):
                os.close(fd)
                fd = None
            self.init_pidfd = fd

    def term(self) -> None:
        if self.init_pid is None or self.init_pidfd is None:
            return
        for child in descendants(self.init_pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGTERM)

    def kill(self) -> None:
        if self.init_pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
        else:
            self.last_resort()  # --die-with-parent takes the namespace down with it

    def on_exit(self) -> None:
        super().on_exit()
        if self.init_pidfd is None or not _subreaper:
            return
        with _pending_lock:
            _pending[self.init_pidfd] = self.init_pid or 0
        self.init_pidfd = None  # now owned by _pending
        sweep_orphans()
        loop = asyncio.get_running_loop()
        with _pending_lock:
            # Tasks of a closed loop never finish: only a live task on this loop counts.
            _background.difference_update([t for t in _background if t.get_loop().is_closed()])
            if _pending and not any(t.get_loop() is loop and not t.done() for t in _background):
                task = loop.create_task(_reap_pending())
                _background.add(task)
                task.add_done_callback(_background.discard)

    def close(self) -> None:
        if self.init_pidfd is not None:
            os.close(self.init_pidfd)
            self.init_pidfd = None


async def _reap_pending() -> None:
    """Sweep until every pending init is reaped (they exit within ms of their bwrap)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REAP_TIMEOUT_S
    while _pending and loop.time() < deadline:
        await asyncio.sleep(0.01)
        sweep_orphans()
    if _pending:
        logger.warning("sandbox inits %s did not exit after their bwrap", sorted(_pending.values()))


class SessionKiller(TreeKiller):
    """Unisolated tier: the command leads its own session/process group (``setsid``).

    ``killpg`` reaches the group, but not a grandchild that called ``setsid()`` itself: this tier
    does not guarantee a clean tree (that is one reason it is "unisolated").
    """

    def _killpg(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def term(self) -> None:
        self._killpg(signal.SIGTERM)

    def kill(self) -> None:
        self._killpg(signal.SIGKILL)


class _StreamProtocol(asyncio.SubprocessProtocol):
    """Queues pipe data as it arrives and records pipe closure and process exit."""

    def __init__(self) -> None:
        self.queue: collections.deque[tuple[Literal["stdout", "stderr"], bytes]] = (
            collections.deque()
        )
        self.buffered = 0
        self.paused = False
        self.closed: set[int] = set()
        self.exited = False
        self.wakeup = asyncio.Event()
        self.transport: asyncio.SubprocessTransport | None = None
        self.killer: TreeKiller | None = None  # told about the exit (guards last-resort kills)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def _pipes(self) -> list[asyncio.ReadTransport]:
        assert self.transport is not None
        out = []
        for fd in (1, 2):
            pipe = self.transport.get_pipe_transport(fd)
            if isinstance(pipe, asyncio.ReadTransport) and fd not in self.closed:
                out.append(pipe)
        return out

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        self.queue.append(("stdout" if fd == 1 else "stderr", data))
        self.buffered += len(data)
        self.wakeup.set()
        if self.buffered > HIGH_WATER_BYTES and not self.paused:
            self.paused = True
            for pipe in self._pipes():
                pipe.pause_reading()

    def take(self) -> tuple[Literal["stdout", "stderr"], bytes]:
        name, data = self.queue.popleft()
        self.buffered -= len(data)
        if self.paused and self.buffered < LOW_WATER_BYTES:
            self.paused = False
            for pipe in self._pipes():
                pipe.resume_reading()
        return name, data

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.closed.add(fd)
        self.wakeup.set()

    def process_exited(self) -> None:
        self.exited = True
        if self.killer is not None:
            self.killer.on_exit()
        self.wakeup.set()


class LocalExecution(Execution):
    """A command started by the local backend (see the module docstring)."""

    def __init__(
        self,
        transport: asyncio.SubprocessTransport,
        protocol: _StreamProtocol,
        killer: TreeKiller,
        *,
        wall_timeout_s: float | None,
        map_exit_code: bool,
        cgroup: ExecCgroup | None = None,
    ) -> None:
        self._transport = transport
        self._cgroup = cgroup
        self._proto = protocol
        self._killer = killer
        protocol.killer = killer
        if protocol.exited:  # exited before we were constructed
            killer.on_exit()
        # bwrap reports a command killed by signal N as exit 128+N; we translate that back to
        # -N only when we sent the signal ourselves (an exit(137) is otherwise indistinguishable).
        self._map_exit_code = map_exit_code
        self._timed_out = False
        self._killed = False
        self._term_task: asyncio.Task[None] | None = None
        self._iterated = False
        loop = asyncio.get_running_loop()
        self._timer = (
            loop.call_later(wall_timeout_s, self._on_timeout)
            if wall_timeout_s is not None
            else None
        )

    @property
    def pid(self) -> int | None:
        """Host pid of the outer process (bwrap, or the command itself when unisolated)."""
        return self._killer.pid

    def _on_timeout(self) -> None:
        if not self._proto.exited and self._term_task is None:
            self._timed_out = True
            self._term_task = asyncio.ensure_future(self._terminate(TIMEOUT_GRACE_S))

    async def terminate(self, *, grace_s: float = 5.0) -> None:
        """SIGTERM the tree, SIGKILL it after ``grace_s`` seconds; idempotent, awaitable twice."""
        if self._term_task is None:
            if self._proto.exited and len(self._proto.closed & {1, 2}) == 2:
                return
            self._killed = True
            self._term_task = asyncio.ensure_future(self._terminate(grace_s))
        await asyncio.shield(self._term_task)

    async def _wait_exited(self, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._proto.exited:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            # Polling is fine here: only during a kill, and exit wakes us within 20 ms.
            await asyncio.sleep(min(remaining, 0.02))
        return True

    async def _terminate(self, grace_s: float) -> None:
        if self._proto.exited:
            self._killer.kill()  # leftovers that still hold the pipes
            return
        self._killer.term()
        if grace_s > 0 and await self._wait_exited(grace_s):
            return
        self._killer.kill()
        if await self._wait_exited(KILL_WAIT_S):
            return
        logger.error("sandbox process %s survived SIGKILL of its tree; killing it", self.pid)
        # Not earlier: killing the outer bwrap before it reaps its namespace init would orphan
        # that init to us outside the reaping bookkeeping (a zombie until the server exits).
        if self._cgroup is not None:
            self._cgroup.kill()
        self._killer.last_resort()
        await self._wait_exited(KILL_WAIT_S)

    def _exit_code(self) -> int | None:
        code = self._transport.get_returncode()
        if (
            code is not None
            and self._map_exit_code
            and (self._killed or self._timed_out)
            and 128 < code <= 128 + 64
        ):
            return -(code - 128)
        return code

    def __aiter__(self) -> AsyncIterator[ExecEvent]:
        if self._iterated:
            raise RuntimeError("an Execution can be iterated only once")
        self._iterated = True
        return self._events()

    async def _events(self) -> AsyncIterator[ExecEvent]:
        proto = self._proto
        loop = asyncio.get_running_loop()
        drain_deadline: float | None = None
        finished = False
        try:
            while True:
                while proto.queue:
                    name, data = proto.take()
                    for start in range(0, len(data), CHUNK_BYTES):
                        yield ExecEvent(stream=name, data=data[start : start + CHUNK_BYTES])
                pipes_done = {1, 2} <= proto.closed
                if proto.exited and pipes_done:
                    break
                timeout: float | None = None
                if proto.exited:
                    if drain_deadline is None:
                        drain_deadline = loop.time() + DRAIN_S
                    timeout = drain_deadline - loop.time()
                    if timeout <= 0:
                        # Someone outside the main process still holds stdout/stderr.
                        self._killer.kill()
                        self._close_pipes()
                        break
                proto.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proto.wakeup.wait(), timeout)
            while proto.queue:
                name, data = proto.take()
                for start in range(0, len(data), CHUNK_BYTES):
                    yield ExecEvent(stream=name, data=data[start : start + CHUNK_BYTES])
            if self._term_task is not None:
                await asyncio.shield(self._term_task)
            finished = True
            code = self._exit_code()
            yield ExecEvent(
                stream="exit",
                exit_code=code,
                timed_out=self._timed_out,
                killed=self._killed,
                limit=None if self._killed or self._timed_out else self._limit(code),
            )
        finally:
            if not finished and not proto.exited:
                # The consumer abandoned the stream: never leave a sandboxed tree running.
                self._killer.kill()
            self._finish()

    def _limit(self, code: int | None) -> Literal["memory", "cpu", "file_size"] | None:
        """Which resource limit ended the command (see ``ExecEvent.limit``)."""
        if self._cgroup is not None and self._cgroup.oom_kills() > 0:
            return "memory"
        # The shell convention (and bwrap's): killed by signal N -> 128+N.
        if code in (128 + signal.SIGXCPU, -signal.SIGXCPU):
            return "cpu"
        if code in (128 + signal.SIGXFSZ, -signal.SIGXFSZ):
            return "file_size"
        return None

    def _close_pipes(self) -> None:
        for fd in (1, 2):
            pipe = self._transport.get_pipe_transport(fd)
            if pipe is not None:
                pipe.close()

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._proto.exited:
            # Abandoned while running (we just sent SIGKILL): close only once bwrap has exited
            # on its own, so it reaps its namespace init instead of orphaning it.
            with contextlib.suppress(RuntimeError):  # no running loop: close right away
                task = asyncio.get_running_loop().create_task(self._close_after_exit())
                _closers.add(task)
                task.add_done_callback(_closers.discard)
                return
        self._close()

    async def _close_after_exit(self) -> None:
        if not await self._wait_exited(KILL_WAIT_S):
            self._killer.last_resort()
        self._close()

    def _close(self) -> None:
        self._killer.close()
        if self._cgroup is not None and not self._cgroup.remove():
            # The namespace init is still exiting or awaits its reaping (see sweep_orphans):
            # try again shortly; failing that, the next execution retries (remove_pending).
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_later(1.0, self._cgroup.remove)
        # Closes the pipes; kills the outer process only if it is somehow still running.
        self._transport.close()

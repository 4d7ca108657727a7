"""Cgroup limits for the bubblewrap tier: memory (no swap), process count, and OOM detection.

rlimits are per process (``RLIMIT_AS`` counts address space, not memory); a cgroup bounds the
whole sandbox and tells us when the kernel's OOM killer ended it, so a task can fail with
``memory_limit`` instead of a bare ``-9`` (research/sandboxes.md §5.2, rows 6 and 12-13).

Each execution gets its own cgroup, nested under the server's own cgroup (so the server's
accounting and any limits above it still apply), in every controller we use:

* cgroup v2 (a unified hierarchy whose subtree we may write, with ``memory`` and ``pids``
  enabled in it): ``memory.max``, ``memory.swap.max`` = 0, ``pids.max``; OOM kills from
  ``memory.events``; ``cgroup.kill`` empties it. The server's cgroup must be able to have
  children with controllers (the "no internal processes" rule), which holds in a delegated
  subtree such as ``systemd-run --scope -p Delegate=yes`` or a container with its own cgroupns.
* cgroup v1 (hybrid hosts such as this one): ``memory.limit_in_bytes`` and, where swap
  accounting exists, ``memory.memsw.limit_in_bytes``; ``pids.max``; OOM kills from the
  ``oom_kill`` line of ``memory.oom_control``.

The command joins the cgroup before anything else runs: the spawn line starts with
``sh -c 'echo $$ > …/cgroup.procs; exec "$@"'`` (measured: no Python launcher in the path).
Without a writable hierarchy (not root, read-only cgroupfs) the tier runs with rlimits only and
``capabilities().details["cgroup"]`` is false.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT_NAME = "agent-runtime"
MIB = 1024 * 1024
JOIN_SCRIPT = 'for f in $AGENT_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; exec "$@"'
"""``sh -c`` script that moves the shell into every listed ``cgroup.procs``, then execs argv."""


@dataclass(frozen=True)
class CgroupSupport:
    """Where per-execution cgroups are created. ``parents`` maps controller → directory
    (``{"unified": …}`` for v2)."""

    version: int
    parents: dict[str, Path]


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per controller (``"unified"`` for v2), from /proc."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else ["unified"]:
                out[name] = path
    return out


def _writable_parent(mount: Path, own: str) -> Path | None:
    """``<mount><own>/agent-runtime``, created if we may; ``None`` otherwise."""
    parent = mount / own.lstrip("/") / PARENT_NAME
    try:
        parent.mkdir(exist_ok=True)
        probe = parent / f"probe-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        probe.rmdir()
    except OSError:
        return None
    return parent


def detect() -> CgroupSupport | None:
    """Find a hierarchy we can create per-execution cgroups in (v2 first, then v1)."""
    own = _own_paths()
    unified = CGROUP_ROOT / "cgroup.controllers"
    if unified.exists() and "unified" in own:  # pure v2
        parent = _writable_parent(CGROUP_ROOT, own["unified"])
        if parent is not None:
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
            enabled = set((parent / "cgroup.subtree_control").read_text().split())
            if {"memory", "pids"} <= enabled:
                return CgroupSupport(2, {"unified": parent})
            logger.info("cgroup v2: cannot enable memory+pids under %s", parent)
        return None
    parents: dict[str, Path] = {}
    for controller in ("memory", "pids"):
        mount = CGROUP_ROOT / controller
        if controller in own and mount.is_dir():
            parent = _writable_parent(mount, own[controller])
            if parent is not None:
                parents[controller] = parent
    if set(parents) == {"memory", "pids"}:
        return CgroupSupport(1, parents)
    return None


class ExecCgroup:
    """The cgroup(s) of one execution: create with limits, join, read OOM kills, kill, remove."""

    def __init__(self, support: CgroupSupport, *, memory_mb: int, pids: int, tag: str = "") -> None:
        self.support = support
        name = f"x-{tag}{uuid.uuid4().hex[:12]}"
        self.dirs = {c: parent / name for c, parent in support.parents.items()}
        created: list[Path] = []
        try:
            for path in self.dirs.values():
                path.mkdir()
                created.append(path)
            limit = str(memory_mb * MIB)
            if support.version == 2:
                d = self.dirs["unified"]
                _write(d / "memory.max", limit)
                _write(d / "memory.swap.max", "0", optional=True)
                _write(d / "pids.max", str(pids))
            else:
                mem = self.dirs["memory"]
                _write(mem / "memory.limit_in_bytes", limit)
                _write(mem / "memory.memsw.limit_in_bytes", limit, optional=True)
                _write(self.dirs["pids"] / "pids.max", str(pids))
        except OSError:
            for path in created:
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise

    @classmethod
    def existing(cls, support: CgroupSupport, dirs: dict[str, Path]) -> ExecCgroup:
        """A handle on cgroups another server process created (read usage, kill)."""
        cgroup = cls.__new__(cls)
        cgroup.support = support
        cgroup.dirs = dirs
        return cgroup

    def memory_bytes(self) -> int | None:
        """Current memory use of the cgroup in bytes (``None`` if unreadable)."""
        if self.support.version == 2:
            path = self.dirs["unified"] / "memory.current"
        else:
            path = self.dirs["memory"] / "memory.usage_in_bytes"
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system, seconds) used by the cgroup so far, exited processes
        included: v2's ``cpu.stat`` ``usage_usec`` (kept without the cpu controller enabled),
        v1's ``cpuacct.usage`` is not joined here, so ``None``."""
        if self.support.version != 2:
            return None
        with contextlib.suppress(OSError, ValueError):
            for line in (self.dirs["unified"] / "cpu.stat").read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "usage_usec":
                    return int(value) / 1e6
        return None

    @property
    def procs_files(self) -> str:
        """Space-separated ``cgroup.procs`` paths for ``JOIN_SCRIPT``."""
        return " ".join(str(d / "cgroup.procs") for d in self.dirs.values())

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in this cgroup."""
        if self.support.version == 2:
            path, key = self.dirs["unified"] / "memory.events", "oom_kill"
        else:
            path, key = self.dirs["memory"] / "memory.oom_control", "oom_kill"
        with contextlib.suppress(OSError, ValueError):
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        return 0

    def pids(self) -> list[int]:
        out: set[int] = set()
        for d in self.dirs.values():
            with contextlib.suppress(OSError, ValueError):
                out.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return sorted(out)

    def kill(self) -> None:
        """SIGKILL everything in the cgroup (v2: ``cgroup.kill``; v1: each member)."""
        if self.support.version == 2:
            with contextlib.suppress(OSError):
                _write(self.dirs["unified"] / "cgroup.kill", "1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        """Remove the cgroup directories (they must be empty); ``True`` when all are gone.

        Otherwise (members still exiting, or the sandbox's namespace init not reaped yet) the
        cgroup is remembered and removed by a later :func:`remove_pending`, which every new
        execution calls.
        """
        done = True
        for path in self.dirs.values():
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        with _pending_lock:
            if done:
                _pending.discard(self)
            else:
                _pending.add(self)
        return done


_pending: set[ExecCgroup] = set()
_pending_lock = threading.Lock()
# A server that exits (SIGTERM, deploy) removes what it can on the way out; the next start's
# sweep takes the rest.
atexit.register(lambda: remove_pending())


def owner_tag(data_dir: object) -> str:
    """Name prefix (after ``x-``) for the cgroups of servers using ``data_dir``, so two
    deployments (or test runs) on one host can tell their cgroups apart: 6 hex digits + ``-``."""
    return hashlib.sha256(os.fsencode(str(data_dir))).hexdigest()[:6] + "-"


def remove_pending() -> None:
    """Retry removing the cgroups of finished executions that were not empty yet."""
    with _pending_lock:
        waiting = list(_pending)
    for cgroup in waiting:
        cgroup.remove()


SWEEP_MIN_AGE_S = 60.0
"""Only cgroups older than this are swept: another server process sharing the parent (daphne
and a worker) may have just created one it is about to join."""


def sweep(support: CgroupSupport) -> int:
    """Remove empty per-execution cgroups left by a crashed server; returns how many. A
    non-empty cgroup cannot be removed (rmdir fails), so running sandboxes are never touched."""
    removed = 0
    now = time.time()
    for parent in support.parents.values():
        with contextlib.suppress(OSError):
            for child in parent.iterdir():
                if not (child.is_dir() and child.name.startswith("x-")):
                    continue
                with contextlib.suppress(OSError):
                    if now - child.stat().st_mtime >= SWEEP_MIN_AGE_S:
                        child.rmdir()
                        removed += 1
    return removed


def _write(path: Path, value: str, *, optional: bool = False) -> None:
    try:
        path.write_text(value)
    except FileNotFoundError:
        if not optional:
            raise

"""Host process helpers of the ``local`` backend: the subreaper, reaping an adopted sandbox
init, and walking a process tree through ``/proc``.

Reaping (research note, gotcha 3): when bwrap exits, the sandbox's pid-namespace init can be
orphaned; the server makes itself a child subreaper (:func:`ensure_subreaper`) so the init is
re-parented to it and reaped by pid or pidfd (never with a blind ``waitpid(-1)`` that could
steal another subprocess's status). In Docker the image's PID 1 is ``tini -s``, which reaps
everything else.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import time

logger = logging.getLogger(__name__)

REAP_TIMEOUT_S = 5.0
"""Seconds to keep trying to reap an orphaned namespace init (the capability probe's)."""
_PR_SET_CHILD_SUBREAPER = 36
_subreaper: bool | None = None


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

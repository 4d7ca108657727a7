"""The seccomp filter of the bubblewrap tier: kernel interfaces sandboxed code has no use for.

Built once per process with libseccomp (through ``pyseccomp``, whose import costs ~20 ms, see
research/sandboxes.md §3.8) and handed to ``bwrap --seccomp FD`` as raw BPF, which bwrap loads
right before it execs the command, so bwrap's own setup calls (mount, pivot_root) are not
affected. The default action is *allow*: this is a deny list in the spirit of Docker's and
Podman's default profiles, narrowed to what a pid/net/user-namespaced, capability-less process
could still reach:

* debugging and memory of other processes: ``ptrace``, ``process_vm_readv/writev``,
  ``kcmp``, ``pidfd_getfd``;
* kernel and system state: module loading, ``kexec_*``, ``reboot``, ``swapon/off``, ``acct``,
  ``syslog``, clock setting, ``quotactl``, ``lookup_dcookie``;
* namespaces and mounts (the sandbox already cannot create user namespaces; these close the
  rest): ``unshare``, ``setns``, ``mount``, ``umount2``, ``pivot_root``, ``chroot``,
  ``open_tree``, ``move_mount``, ``fsopen``, ``fsconfig``, ``fsmount``, ``fspick``,
  ``mount_setattr``, ``open_by_handle_at``, ``name_to_handle_at``;
* large attack surfaces with no use in a build or test run: ``bpf``, ``perf_event_open``,
  ``userfaultfd``, ``io_uring_*``, the kernel keyring (``keyctl``, ``add_key``,
  ``request_key``), ``fanotify_init``;
* socket families a sandbox never needs: ``AF_PACKET`` (raw frames), ``AF_KEY``, ``AF_VSOCK``
  (on a VM host it reaches the hypervisor), ``AF_ALG``. ``AF_NETLINK`` is left alone (libc and
  ``ip`` use it, and the sandbox's network namespace is its own).

Each denied call fails with ``EPERM``, so programs see an ordinary permission error instead of
being killed. System calls of a foreign architecture (i386 via ``int 0x80`` on x86-64) kill the
process (libseccomp's bad-arch default).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandboxes.backends._bwrap import Setup

logger = logging.getLogger(__name__)

DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "syslog", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "quotactl", "lookup_dcookie",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "open_by_handle_at",
    "name_to_handle_at",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "keyctl", "add_key", "request_key", "fanotify_init",
)  # fmt: skip
"""System calls that fail with EPERM in the sandbox."""

DENIED_SOCKET_FAMILIES = {
    "AF_PACKET": 17,
    "AF_KEY": 15,
    "AF_VSOCK": 40,
    "AF_ALG": 38,
}
"""``socket()`` / ``socketpair()`` address families that fail with EPERM."""

RESTRICTED_SOCKET_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}
"""Also denied to ``socket()`` in the ``landlock`` tier, which has no network namespace: the
host's loopback services and its named unix sockets (a database, a container engine) would
otherwise be reachable. ``socketpair(AF_UNIX)`` stays allowed (pipes between processes)."""

_lock = threading.Lock()
_cached: dict[bool, bytes] = {}
_error: str | None = None


def build_filter(*, restricted: bool = False) -> bytes:
    """The filter as raw BPF (``struct sock_filter[]``, 8 bytes per instruction);
    ``restricted`` adds :data:`RESTRICTED_SOCKET_FAMILIES` (the ``landlock`` tier).

    Raises:
        OSError / ImportError: libseccomp or ``pyseccomp`` is unavailable.
    """
    import pyseccomp as seccomp

    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            flt.add_rule(deny, name)
        except (OSError, ValueError, RuntimeError):
            # Older libseccomp without the name: the kernel it targets lacks the call too.
            logger.debug("seccomp: %s unknown to libseccomp, not filtered", name)
    for family in DENIED_SOCKET_FAMILIES.values():
        for call in ("socket", "socketpair"):
            flt.add_rule(deny, call, seccomp.Arg(0, seccomp.EQ, family))
    if restricted:
        for family in RESTRICTED_SOCKET_FAMILIES.values():
            flt.add_rule(deny, "socket", seccomp.Arg(0, seccomp.EQ, family))
    read_fd, write_fd = os.pipe()
    try:
        with os.fdopen(write_fd, "wb", closefd=True) as out:
            flt.export_bpf(out)
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    program = b"".join(chunks)
    if not program or len(program) % 8:
        raise OSError("libseccomp exported an empty or malformed BPF program")
    return program


def cached_filter(*, restricted: bool = False) -> bytes | None:
    """The filter built once per process and variant, or ``None`` when it cannot be built."""
    global _error
    with _lock:
        if restricted not in _cached and _error is None:
            try:
                _cached[restricted] = build_filter(restricted=restricted)
            except Exception as exc:  # ImportError, OSError, libseccomp errors
                _error = f"{type(exc).__name__}: {exc}"
                logger.warning("no seccomp filter for sandboxes: %s", _error)
        return _cached.get(restricted)


def unavailable_reason() -> str | None:
    """Why :func:`cached_filter` returned ``None`` (after it was called)."""
    return _error


def filter_fd(program: bytes) -> int:
    """A file descriptor positioned at the start of ``program`` for ``bwrap --seccomp``.

    A memfd per exec: bwrap reads from the descriptor's offset, which would be shared if one
    descriptor served concurrent spawns. The caller closes it after the spawn.
    """
    fd = os.memfd_create("agent-runtime-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def with_seccomp(
    setup: Setup,
    probe: Callable[[Setup], subprocess.CompletedProcess[str]],
    details: dict[str, Any],
    *,
    enabled: bool,
) -> Setup:
    """``setup`` with the filter when it is enabled, can be built, and bwrap accepts it (checked
    by running ``probe`` with it); ``details`` records the outcome for ``/health``."""
    if not enabled:
        details.update(seccomp=False, seccomp_unavailable="SANDBOX_SECCOMP is off")
        return setup
    program = cached_filter()
    if program is None:
        details.update(seccomp=False, seccomp_unavailable=unavailable_reason())
        return setup
    filtered = dataclasses.replace(setup, seccomp=program)
    try:
        run = probe(filtered)
    except subprocess.TimeoutExpired:
        run = subprocess.CompletedProcess([], 1, "", "probe timed out")
    if run.returncode != 0:
        reason = run.stderr.strip()[-300:] or f"exit {run.returncode}"
        logger.warning("bubblewrap refused the seccomp filter: %s", reason)
        details.update(seccomp=False, seccomp_unavailable=reason)
        return setup
    details.update(seccomp=True, seccomp_denied_syscalls=len(DENIED_SYSCALLS))
    return filtered


__all__ = [
    "DENIED_SOCKET_FAMILIES",
    "DENIED_SYSCALLS",
    "build_filter",
    "cached_filter",
    "filter_fd",
    "unavailable_reason",
    "with_seccomp",
]

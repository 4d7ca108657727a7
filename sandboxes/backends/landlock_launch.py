"""Launcher of the ``landlock`` tier (stdlib only): confine this process, then exec sbxd.

Used where bubblewrap cannot run (no user namespaces: a Docker-default container, a locked
down CI runner). The server starts ``[sh (join cgroup) →] prlimit → setpriv (sandbox uid, no
groups, no_new_privs, parent-death signal) → python landlock_launch.py CONFIG``, and this
script, still before any untrusted code runs:

1. creates a Landlock ruleset (kernel docs, "Landlock: unprivileged access control",
   https://docs.kernel.org/userspace-api/landlock.html) handling every filesystem right the
   kernel knows (ABI 1-5), TCP bind/connect (ABI ≥ 4) and, with ABI ≥ 6, the scopes for
   signals and abstract unix sockets; it allows read+execute below the system directories,
   read below ``/proc`` and the listed read-only paths, everything below the workspace and the
   sandbox's private tmp, and read/write of a few ``/dev`` files. Nothing else of the host can
   be opened, no TCP socket can bind or connect, and no process outside the sandbox can be
   signalled, ptraced or have its ``/proc/<pid>/environ`` read (Landlock confines ptrace
   access checks to the domain);
2. loads the seccomp filter the server built (``_seccomp``, restricted variant: no
   ``AF_INET``/``AF_INET6``/``AF_NETLINK``/``AF_UNIX`` sockets, since there is no network
   namespace; ``socketpair`` still works) from an inherited descriptor;
3. execs ``argv`` (the sandbox's python running ``sbxd``).

CONFIG is one JSON object: ``{"rx": [...], "ro": [...], "rw": [...], "dev": [...],
"seccomp_fd": int | null, "argv": [...]}``. Any failure exits with status 125 and a message on
stderr, so the sandbox never runs unconfined.

Without a pid or network namespace the sandbox still sees the host's process list (not the
processes' environments) and shares the host's UTS and IPC namespaces: weaker than bubblewrap,
stronger than nothing; ``/health`` says which tier runs.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # x86_64 and arm64
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2

# LANDLOCK_ACCESS_FS_* bits, in ABI order.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the only ones on files


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel's uapi header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)


def abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is unavailable or disabled."""
    version = _libc.syscall(SYS_CREATE_RULESET, None, 0, CREATE_RULESET_VERSION)
    return max(0, int(version))


def handled_fs(version: int) -> int:
    """Every filesystem right ABI ``version`` knows (a right it does not handle stays allowed)."""
    rights = (1 << 13) - 1
    if version >= 2:
        rights |= REFER
    if version >= 3:
        rights |= TRUNCATE
    if version >= 5:
        rights |= IOCTL_DEV
    return rights


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def restrict(config: dict) -> int:
    """Apply the Landlock ruleset of ``config`` to this process; returns the ABI used.

    Raises:
        OSError: Landlock is unavailable or a rule could not be added (a missing path is
            skipped: there is nothing to allow below it).
    """
    version = abi()
    if version < 1:
        raise OSError("Landlock is not available on this kernel")
    fs = handled_fs(version)
    attr = _RulesetAttr(fs, NET_BIND_TCP | NET_CONNECT_TCP if version >= 4 else 0, 0)
    if version >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    size = 24 if version >= 6 else 16 if version >= 4 else 8
    ruleset = _check(
        _libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), size, 0), "landlock_create_ruleset"
    )
    read = READ_FILE | READ_DIR
    grants = [
        (config.get("rx", ()), read | EXECUTE),
        (config.get("ro", ()), read),
        (config.get("rw", ()), fs),
        (config.get("dev", ()), READ_FILE | WRITE_FILE | (TRUNCATE & fs) | (IOCTL_DEV & fs)),
    ]
    try:
        for paths, rights in grants:
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    allowed = rights if os.path.isdir(path) else rights & FILE_RIGHTS
                    rule = ctypes.byref(_PathBeneath(allowed & fs, fd))
                    added = _libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, rule, 0)
                    _check(added, f"landlock_add_rule({path})")
                finally:
                    os.close(fd)
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(_libc.syscall(SYS_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return version


def load_seccomp(fd: int) -> None:
    """Install the raw BPF program read from ``fd`` (``struct sock_filter[]``) as this
    process's seccomp filter (kept across exec and by every child).

    Raises:
        OSError: the program is malformed or the kernel refused it.
    """
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    program = b"".join(chunks)
    if not program or len(program) % 8:
        raise OSError("malformed seccomp program")
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def main() -> int:
    try:
        config = json.loads(sys.argv[1])
        restrict(config)
        if config.get("seccomp_fd") is not None:
            load_seccomp(int(config["seccomp_fd"]))
        argv = [str(a) for a in config["argv"]]
        os.execv(argv[0], argv)  # noqa: S606 - a fixed argv from the server
    except (OSError, ValueError, KeyError, IndexError) as exc:
        sys.stderr.write(f"landlock_launch: {exc}\n")
    return 125


if __name__ == "__main__":
    sys.exit(main())

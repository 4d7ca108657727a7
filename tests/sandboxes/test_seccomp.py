"""The bubblewrap tier's seccomp filter, observed from inside a real sandbox.

Each probe is an operation that works in the same sandbox without the filter (the second
backend, SANDBOX_SECCOMP=0), so the tests show the filter doing the refusing.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from sandboxes.backends._seccomp import DENIED_SYSCALLS
from sandboxes.backends.local import LocalBackend
from tests.sandboxes.helpers import run

pytestmark = pytest.mark.sandbox

# Each probe prints the errno of one operation (0 = it worked).
PROBES = r"""
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(fn, *args):
    ctypes.set_errno(0)
    return 0 if fn(*args) != -1 else ctypes.get_errno()
def in_child(fn, *args):
    pid = os.fork()
    if pid == 0:
        os._exit(call(fn, *args))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
def sock(family, kind):
    try:
        socket.socket(family, kind).close()
        return 0
    except OSError as exc:
        return exc.errno
out = {
    # PTRACE_TRACEME (in a child: a traced process would stop on its next signal): allowed
    # to any process without the filter.
    "ptrace": in_child(libc.ptrace, 0, 0, None, None),
    # keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1)
    "keyctl": call(libc.syscall, 250, 0, -3, 1),
    # io_uring_setup(1, &params)
    "io_uring_setup": call(libc.syscall, 425, 1, ctypes.byref((ctypes.c_char * 120)())),
    "vsock": sock(40, socket.SOCK_STREAM),
    "alg": sock(38, socket.SOCK_SEQPACKET),
    # Ordinary work still works under the filter.
    "unix": sock(socket.AF_UNIX, socket.SOCK_STREAM),
    "fork": in_child(libc.getpid) ,
}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def unfiltered() -> Iterator[LocalBackend]:
    with override_settings(SANDBOX_FORCE_TIER=None, SANDBOX_SECCOMP=False):
        b = LocalBackend()
        caps = b.capabilities()
        assert caps.tier == "bubblewrap", caps.reason
        assert caps.details["seccomp"] is False
        yield b


async def _probe(backend: LocalBackend, workspace: Path) -> dict[str, int]:
    out, err, exit_event = await run(backend, workspace, PROBES)
    assert exit_event.exit_code == 0, err
    return json.loads(out)


def test_the_filter_is_on_and_reported(backend: LocalBackend) -> None:
    details = backend.capabilities().details
    assert details["seccomp"] is True
    assert details["seccomp_denied_syscalls"] == len(DENIED_SYSCALLS)


async def test_denied_calls_fail_with_eperm_and_ordinary_work_goes_on(
    backend: LocalBackend, unfiltered: LocalBackend, workspace: Path
) -> None:
    filtered = await _probe(backend, workspace)
    open_ = await _probe(unfiltered, workspace)

    for name in ("ptrace", "keyctl", "io_uring_setup", "vsock", "alg"):
        assert filtered[name] == errno.EPERM, (name, filtered)
        assert open_[name] != errno.EPERM, (name, open_)  # the filter made the difference
    assert open_["ptrace"] == 0
    assert filtered["unix"] == open_["unix"] == 0
    assert filtered["fork"] == 0

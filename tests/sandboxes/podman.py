"""A real container engine for the ``docker`` backend's tests: Podman's Docker-compatible API.

Recipe and gotchas: ``shared/research/sandboxes.md`` §8. The service runs with its own storage
under a scratch directory (``--root``/``--runroot``), cgroupfs and runc (crun refuses this
host's hybrid cgroups), and serves ``unix://<dir>/podman.sock``. The test image is built
offline with ``podman import``: a skeleton root filesystem (``/bin`` → ``usr/bin`` links, a
passwd file, the linker cache) whose ``/usr`` is the host's, bound read-only into every sandbox
through ``SANDBOX_DOCKER_MOUNTS``, so the image has the host's ``python3`` without a registry.
Teardown removes every container, stops the service and kills its ``conmon`` monitors.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

IMAGE = "localhost/agent-runtime-test:latest"
CATATONIT = "/usr/libexec/podman/catatonit"  # the catatonit package (podman's init)


def _rootfs() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:

        def add(
            name: str, kind: bytes, data: bytes = b"", target: str = "", mode: int = 0o755
        ) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.size, info.linkname = kind, mode, len(data), target
            tar.addfile(info, io.BytesIO(data) if data else None)

        for folder in ("usr", "etc", "tmp", "workspace", "proc", "dev", "sys", "run"):
            add(folder, tarfile.DIRTYPE)
        add("root", tarfile.DIRTYPE, mode=0o700)  # like real images: root-only
        for name in ("bin", "sbin", "lib", "lib64"):
            add(name, tarfile.SYMTYPE, target=f"usr/{name}")
        add("etc/passwd", tarfile.REGTYPE, b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", tarfile.REGTYPE, b"root:x:0:\n")
        add("etc/ld.so.cache", tarfile.REGTYPE, Path("/etc/ld.so.cache").read_bytes())
    return out.getvalue()


@contextlib.contextmanager
def podman_service() -> Iterator[str]:
    """Start the service and import the test image; yields the ``unix://`` URL.

    Fails (in CI) or skips (elsewhere) when podman is not installed
    (``scripts/install-system-deps.sh`` installs it)."""
    podman = shutil.which("podman")
    if podman is None or shutil.which("runc") is None or not os.path.exists(CATATONIT):
        message = "podman/runc/catatonit are not installed (scripts/install-system-deps.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="agent-runtime-podman-", dir="/tmp"))
    base = [
        podman, "--root", str(root / "root"), "--runroot", str(root / "run"),
        "--cgroup-manager=cgroupfs", "--events-backend=file", "--runtime=runc",
    ]  # fmt: skip
    subprocess.run([*base, "import", "-", IMAGE], input=_rootfs(), check=True, capture_output=True)
    sock = root / "podman.sock"
    # Under catatonit, a subreaper that reaps: conmon double-forks, and its orphans would
    # otherwise become zombies of this (subreaper) test process.
    service = subprocess.Popen(
        [CATATONIT, "--", *base, "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert service.poll() is None, "podman system service exited"
            assert time.monotonic() < deadline, "podman system service did not start"
            time.sleep(0.05)
        yield f"unix://{sock}"
    finally:
        subprocess.run([*base, "rm", "--all", "--force", "--time", "0"], capture_output=True)
        os.killpg(service.pid, signal.SIGTERM)
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()
        _kill_monitors(str(root))
        subprocess.run([*base, "system", "reset", "--force"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _kill_monitors(marker: str) -> None:
    """conmon processes (and anything else) still naming our storage in their command line."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker.encode() in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(int(entry.name), 0)

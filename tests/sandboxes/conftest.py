"""Fixtures for the sandbox tests: real bubblewrap, real files, no mocks of the code under test."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

if not settings.configured:  # pragma: no cover - only when run without pytest-django settings
    settings.configure(SANDBOX_BACKEND="local")

from sandboxes.backends.local import LocalBackend
from sandboxes.registry import reset_backends


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    """A scratch dir the sandbox uid can traverse (pytest's tmp_path is 0700 under root)."""
    root = Path(tempfile.mkdtemp(prefix="sbx-test-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workspace(sandbox_root: Path) -> Path:
    """An empty workspace directory below :func:`sandbox_root`."""
    ws = sandbox_root / "ws"
    ws.mkdir(mode=0o755)
    return ws


@pytest.fixture
def outside(sandbox_root: Path) -> Path:
    """A host directory next to the workspace that sandboxed code must never reach."""
    out = sandbox_root / "outside"
    out.mkdir(mode=0o755)
    (out / "secret.txt").write_text("host secret\n")
    return out


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    """A TCP listener on host 127.0.0.1; yields its port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _fresh_backends() -> Iterator[None]:
    reset_backends()
    yield
    reset_backends()


@pytest.fixture
def host_pids() -> Callable[[str], list[int]]:
    """``host_pids(marker)``: host pids whose command line contains ``marker``."""
    return host_pids_with


def host_pids_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\x00", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    with override_settings(SANDBOX_FORCE_TIER=None, SANDBOX_ALLOW_UNISOLATED=False):
        b = LocalBackend()
        caps = b.capabilities()
        # bubblewrap is a hard requirement (scripts/install-system-deps.sh): never skip.
        assert caps.available and caps.tier == "bubblewrap", caps.reason
        yield b


ESCAPE_TARGETS = ["bubblewrap", "landlock", "docker"]
"""Every tier the escape suite (``test_escape.py``) runs against; each must be available here
(in CI a missing tier fails the suite instead of skipping it)."""


def _local_backend(tier: str) -> Iterator[LocalBackend]:
    with override_settings(SANDBOX_FORCE_TIER=tier, SANDBOX_ALLOW_UNISOLATED=False):
        b = LocalBackend()
        caps = b.capabilities()
        if not (caps.available and caps.tier == tier):
            message = f"the {tier} tier is not available here: {caps.reason}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        yield b


@pytest.fixture(scope="session")
def podman_url() -> Iterator[str]:
    """A Podman service speaking the Docker API, with the test image (``tests/sandboxes/podman``)."""
    from tests.sandboxes.podman import podman_service

    with podman_service() as url:
        yield url


@contextlib.contextmanager
def docker_settings(url: str) -> Iterator[None]:
    """Settings that point the ``docker`` backend at the test engine and image."""
    from tests.sandboxes.podman import IMAGE

    with override_settings(
        SANDBOX_DOCKER_URL=url, SANDBOX_DOCKER_IMAGE=IMAGE, SANDBOX_DOCKER_MOUNTS=["/usr:/usr:ro"]
    ):
        yield


@pytest.fixture(scope="module")
def docker_backend(podman_url: str) -> Iterator[object]:
    """A :class:`DockerBackend` on the Podman service; its containers are removed after."""
    from sandboxes.backends.docker import DockerBackend

    with docker_settings(podman_url):
        backend = DockerBackend()
        caps = backend.capabilities()
        assert caps.available, caps.reason
        yield backend
        # Nothing may be left running: every test stops the sandboxes it started.
        left = backend._containers(all_=False)
        for container in backend._containers():
            container.remove(force=True)
        assert left == [], f"containers left running: {[c.name for c in left]}"


@pytest.fixture(scope="module", params=ESCAPE_TARGETS)
def escape_target(request: pytest.FixtureRequest) -> Iterator[tuple[str, object]]:
    """``(tier, backend)`` for each of :data:`ESCAPE_TARGETS`."""
    if request.param == "docker":
        yield "docker", request.getfixturevalue("docker_backend")
        return
    yield from ((request.param, b) for b in _local_backend(request.param))

"""sandboxes.registry and sandboxes.local.default_data_dir."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from sandboxes import local
from sandboxes.backends.local import LocalBackend
from sandboxes.base import Capabilities, Execution, SandboxBackend
from sandboxes.registry import get_backend, register_backend, reset_backends


def test_default_backend_is_a_local_singleton() -> None:
    first = get_backend()
    assert isinstance(first, LocalBackend)
    assert first.name == "local"
    assert get_backend() is first
    reset_backends()
    assert get_backend() is not first


def test_unknown_backend() -> None:
    with override_settings(SANDBOX_BACKEND="nope"), pytest.raises(ImproperlyConfigured):
        get_backend()
    with (
        override_settings(SANDBOX_BACKEND="no.such.module.Backend"),
        pytest.raises(ImproperlyConfigured),
    ):
        get_backend()


@register_backend("test-dummy")
class DummyBackend(SandboxBackend):
    def capabilities(self) -> Capabilities:
        return Capabilities(backend="test-dummy", tier="none", isolated=False, available=False)

    async def exec(self, spec, argv, *, cwd="", env=None, stdin=None) -> Execution:  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_registered_and_dotted_backends() -> None:
    with override_settings(SANDBOX_BACKEND="test-dummy"):
        assert isinstance(get_backend(), DummyBackend)
    with override_settings(SANDBOX_BACKEND=f"{__name__}.DummyBackend"):
        assert isinstance(get_backend(), DummyBackend)
    with (
        override_settings(SANDBOX_BACKEND="django.conf.Settings"),
        pytest.raises(ImproperlyConfigured),
    ):
        get_backend()  # not a SandboxBackend


def test_default_data_dir_traversable(sandbox_root: Path) -> None:
    base = sandbox_root / "project"
    base.mkdir(mode=0o755)
    assert local.traversable_by_others(base)
    assert local.default_data_dir(base) == base / "var"


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback applies only when running as root")
def test_default_data_dir_private_ancestor(sandbox_root: Path) -> None:
    private = sandbox_root / "private"
    private.mkdir(mode=0o700)
    base = private / "project"
    base.mkdir(mode=0o755)
    assert not local.traversable_by_others(base)
    data_dir = local.default_data_dir(base)
    assert data_dir == Path("/var/lib/agent-runtime")
    assert data_dir.stat().st_mode & 0o755 == 0o755
    # And the sandbox uid can really reach it.
    check = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         "test", "-x", str(data_dir)],
    )  # fmt: skip
    assert check.returncode == 0
    unreachable = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
         "test", "-e", str(base)],
    )  # fmt: skip
    assert unreachable.returncode != 0  # control: the private one really is unreachable

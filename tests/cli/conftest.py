"""The ``runtime`` CLI run as a real subprocess (``bin/runtime``) against a real daphne.

One daphne for all of them (starting one costs seconds on a busy machine); each test still gets its own user
and key (``api_user``/``api_token`` on a transactional DB), and the CLI a clean HOME, so no
config file of the machine's user is read.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import ROOT
from tests.transport.conftest import DaphneServer, api_token, api_user, live_daphne

__all__ = ["api_token", "api_user"]

RUNTIME = ROOT / "bin" / "runtime"


@pytest.fixture(scope="package")  # stopped with the package: its executor claims queued tasks
def server(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaphneServer]:
    with live_daphne(tmp_path_factory.mktemp("daphne"), STREAM_HEARTBEAT_S=1) as live:
        yield live


@dataclass
class Cli:
    url: str
    key: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "RUNTIME_URL": self.url,
            "RUNTIME_API_KEY": self.key,
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return {k: v for k, v in env.items() if v != ""}

    def __call__(
        self, *args: str, timeout: float = 60, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``bin/runtime *args`` to completion; stdout/stderr captured as text."""
        return subprocess.run(
            [str(RUNTIME), *args], env=self.env(**env), capture_output=True, text=True,
            timeout=timeout, input=stdin, cwd=self.home,
        )  # fmt: skip

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(RUNTIME), *args], env=self.env(**env), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=self.home,
        )  # fmt: skip


@pytest.fixture
def cli(server: DaphneServer, api_token: str, tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(url=server.url, key=api_token, home=home)


@pytest.fixture
def rest(server: DaphneServer, api_token: str) -> Iterator[httpx.Client]:
    """The REST API, to check what the CLI did."""
    headers = {"Authorization": f"Bearer {api_token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client

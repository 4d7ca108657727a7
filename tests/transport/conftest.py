from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model

from sessions.demo import seed_demo_agents
from tests import procs
from tests.factories import make_token


@dataclass
class DaphneServer:
    url: str
    ws_url: str
    log: Path

    def read_log(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def live_daphne(log_dir: Path, **env: Any) -> Iterator[DaphneServer]:
    """A real daphne serving the ASGI app (HTTP + WebSocket + inline executor) on the test DB,
    with ``env`` added to its environment (settings); stopped on exit."""
    port = procs.free_port()
    log = log_dir / "daphne.log"
    proc = procs.start_daphne(port, log, **env)
    try:
        yield DaphneServer(url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}", log=log)
    finally:
        procs.stop(proc)


@pytest.fixture
def daphne_server(transactional_db: Any, tmp_path: Path) -> Iterator[DaphneServer]:
    """A real daphne serving the ASGI app (HTTP + WebSocket + inline executor) on the test DB."""
    with live_daphne(tmp_path, STREAM_HEARTBEAT_S=1) as server:
        yield server


@pytest.fixture
def api_user(transactional_db: Any) -> Any:
    user = get_user_model().objects.create_user("alice", password="x")
    seed_demo_agents(owner=user)
    return user


@pytest.fixture
def api_token(api_user: Any) -> str:
    return make_token(api_user)


@pytest.fixture
def http(daphne_server: DaphneServer, api_token: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=daphne_server.url, headers={"Authorization": f"Bearer {api_token}"}, timeout=60
    ) as client:
        yield client

"""Fixtures for the browser runtime's tests: Debian's Chromium driven by Playwright (browsers
cannot be downloaded here), a signed-in browser context, and the live daphne of the transport
tests (``daphne_server``, ``api_user``, ``api_token``, ``http``)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client

from tests.procs import reap_zombie_children
from tests.transport.conftest import (  # noqa: F401 - fixtures, re-exported for this package
    DaphneServer,
    api_token,
    api_user,
    daphne_server,
    http,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PYODIDE = Path(settings.BASE_DIR) / "node_modules" / "pyodide" / "pyodide.mjs"
LOAD_TIMEOUT_MS = 120_000  # Pyodide's first start: seconds, more on a busy 2-core machine
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def require(ok: bool, why: str) -> None:
    """Skip on a developer's machine without the browser bits; fail in CI, where
    scripts/setup.sh installs them."""
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def login_cookie(user: Any) -> str:
    """A Django session for ``user`` in the test database (the daphne child reads it)."""
    client = Client()
    client.force_login(user)
    return str(client.cookies[settings.SESSION_COOKIE_NAME].value)


@pytest.fixture
def browser_context(
    daphne_server: DaphneServer,  # noqa: F811 - the imported fixtures
    api_user: Any,  # noqa: F811
    http: httpx.Client,  # noqa: F811 - set up (an API key made) before Playwright starts
) -> Iterator[Any]:
    """A Chromium context signed in as ``api_user`` on the live server.

    While Playwright's sync API runs, this thread has a running event loop, and Django refuses
    ORM calls ("async context"): the sign-in is made before it starts, the test talks to the
    server over HTTP only, and Playwright stops before the database fixtures tear down.
    """
    require(os.path.exists(CHROMIUM), "chromium is not installed (scripts/install-system-deps.sh)")
    require(PYODIDE.exists(), "node_modules/pyodide is missing (npm ci, scripts/setup.sh)")
    cookie = login_cookie(api_user)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        context = browser.new_context()
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": daphne_server.url}]
        )
        try:
            yield context
        finally:
            browser.close()
    # Chromium's crashpad handlers double-fork; this (subreaper) process inherits them.
    reap_zombie_children(("chrom",))


@dataclass
class RuntimePage:
    """A browser runtime page and every URL it asked for (pages, scripts, fetches, sockets)."""

    page: Any
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def status(self) -> tuple[str, str]:
        return self.page.eval_on_selector("#status", "e => [e.dataset.state, e.textContent]")

    def wait_for_state(self, state: str, timeout_ms: int = LOAD_TIMEOUT_MS) -> None:
        try:
            self.page.wait_for_selector(f"#status[data-state={state}]", timeout=timeout_ms)
        except Exception as exc:
            raise AssertionError(
                f"status {self.status()} is not {state}; console: {self.console}"
            ) from exc


def open_runtime(context: Any, server: DaphneServer, session_id: str) -> RuntimePage:
    page = context.new_page()
    runtime = RuntimePage(page)
    page.on("request", lambda request: runtime.requests.append(request.url))
    page.on("websocket", lambda ws: runtime.requests.append(ws.url))
    page.on("console", lambda msg: runtime.console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: runtime.console.append(f"pageerror: {err}"))
    page.goto(f"{server.url}/console/sessions/{session_id}/runtime/")
    return runtime


def wait_for_task(client: httpx.Client, task_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = client.get(f"/api/v1/tasks/{task_id}").json()
        if task["status"] in TERMINAL:
            return dict(task)
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} still {task['status']} after {timeout}s")
        time.sleep(0.1)


def task_events(client: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get(f"/api/v1/tasks/{task_id}/events", params={"after": after}).json()
        events += page["events"]
        if not page["events"]:
            return events
        after = page["next_after"]


def screenshot(page: Any, name: str) -> None:
    """Save a full-page screenshot of ``page`` as ``name`` in ``SCREENSHOTS_DIR`` when that is
    set (``SCREENSHOTS_DIR=docs/screenshots`` refreshes the README's pictures); else nothing."""
    folder = os.environ.get("SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def new_session(client: httpx.Client, agent: str, name: str) -> str:
    """A session on ``agent`` created over the API; its id."""
    created = client.post("/api/v1/sessions", json={"agent": agent, "name": name})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])

"""The operator admin in a real browser (Debian's Chromium driven by Playwright): an operator
signs in through the admin's login form, sees a running ``sleep 60`` task on the dashboard,
opens its page, watches the live status, cancels it and sees it become cancelled without the
page reloading, then retries it and lands on the new task. With ``SCREENSHOTS_DIR`` set, the
dashboard and the task page are saved there (1280 px wide, full page)."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model

from sessions.models import Task
from tests.browser.conftest import (
    CHROMIUM,
    TERMINAL,
    DaphneServer,
    require,
    screenshot,
    wait_for_task,
)

pytestmark = [pytest.mark.browser, pytest.mark.transport]

PASSWORD = "operator-pass-123"
TIMEOUT_MS = 30_000


def _wait_status(http: httpx.Client, task_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (now := http.get(f"/api/v1/tasks/{task_id}").json()["status"]) != status:
        assert now not in TERMINAL, f"task {task_id} ended {now} before it was {status}"
        assert time.monotonic() < deadline, f"task {task_id} still {now} after {timeout}s"
        time.sleep(0.1)


def test_operator_cancels_and_retries_a_running_task_in_the_admin(
    daphne_server: DaphneServer, api_user: Any, http: httpx.Client
) -> None:
    require(os.path.exists(CHROMIUM), "chromium is not installed (scripts/install-system-deps.sh)")
    # Everything the database must hold is made before Playwright starts (no ORM after).
    get_user_model().objects.create_user(
        "operator", password=PASSWORD, is_staff=True, is_superuser=True
    )
    session = http.post("/api/v1/sessions", json={"agent": "shell", "name": "admin console"})
    assert session.status_code == 201, session.text
    created = http.post(
        f"/api/v1/sessions/{session.json()['id']}/tasks", json={"input": {"command": "sleep 60"}}
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    pk = Task.objects.get(uuid=task_id).pk
    _wait_status(http, task_id, "running")
    from playwright.sync_api import expect, sync_playwright

    base = daphne_server.url
    task_url = f"{base}/admin/agent_sessions/task/{pk}/change/"
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.on("pageerror", lambda err: problems.append(f"pageerror: {err}"))
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )

            # Sign in through the admin's own form.
            page.goto(f"{base}/admin/login/?next=/admin/")
            page.get_by_label("Username").fill("operator")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()

            # The dashboard counts the running task; its number links to the filtered list.
            running = page.locator('#dashboard-by-agent a[aria-label^="1 running: shell ("]')
            expect(running).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.locator("#content-main .app-agent_sessions")).to_be_visible()
            screenshot(page, "admin-dashboard.png")

            # The task page: live status, the timeline filling in.
            page.goto(task_url)
            status = page.locator("#task-live-status")
            expect(status).to_have_text("running", timeout=TIMEOUT_MS)
            timeline = page.locator("#task-live-timeline")
            expect(timeline).to_contain_text("process.started", timeout=TIMEOUT_MS)
            expect(page.locator("#task-tool-retry")).to_be_disabled()

            # Cancel: the page does not reload; the status turns cancelled as it happens.
            page.evaluate("window.__sameDocument = true")
            page.locator("#task-tool-cancel").click()
            expect(page.locator("#task-live-message")).to_contain_text(
                f"Cancel requested for task {task_id}.", timeout=TIMEOUT_MS
            )
            expect(status).to_have_text("cancelled", timeout=TIMEOUT_MS)
            expect(timeline).to_contain_text("cancelled", timeout=TIMEOUT_MS)
            assert page.evaluate("window.__sameDocument === true"), "the page reloaded"
            assert page.url == task_url
            expect(page.locator("#task-tool-cancel")).to_be_disabled()
            screenshot(page, "admin-task.png")

            # Retry: a new task with the same input, whose page opens.
            page.locator("#task-tool-retry").click()
            page.wait_for_url(re.compile(r"/admin/agent_sessions/task/\d+/change/$"))
            page.wait_for_function(f"!location.pathname.includes('/task/{pk}/')")
            message = page.locator(".messagelist")
            expect(message).to_contain_text(f"(retry of {task_id})", timeout=TIMEOUT_MS)
            new_id = re.search(r"Queued task ([0-9a-f-]{36})", message.inner_text())
            assert new_id is not None
            expect(page.locator("#task-live-status")).to_have_text(
                re.compile("queued|running"), timeout=TIMEOUT_MS
            )
            expect(page.locator("#task-live-timeline")).to_contain_text(
                "task.status", timeout=TIMEOUT_MS
            )
        finally:
            browser.close()
    assert problems == []

    retry = http.get(f"/api/v1/tasks/{new_id.group(1)}").json()
    assert retry["input"] == {"command": "sleep 60"}
    assert http.post(f"/api/v1/tasks/{retry['id']}/cancel").status_code in (200, 202)
    assert wait_for_task(http, retry["id"])["status"] == "cancelled"
    assert http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "cancelled"

"""The ASGI handler (``runtime_project/handlers.py``) over a real daphne: a sync view runs the
synchronous middleware chain, an ``async def`` view the asynchronous one, and a client sees the
same behaviour either way: security headers, CSRF on cookie-authenticated writes, errors in the
error shape, the slash redirect, static files, and an async view cancelled when its client
leaves."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client

from tests.transport.conftest import DaphneServer

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]

API = "/api/v1"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def _browser(server: DaphneServer, user: Any) -> httpx.Client:
    """An httpx client carrying a logged-in browser session of ``user`` (cookie only)."""
    django_client = Client()
    django_client.force_login(user)
    cookie = django_client.cookies[settings.SESSION_COOKIE_NAME].value
    return httpx.Client(
        base_url=server.url, cookies={settings.SESSION_COOKIE_NAME: cookie}, timeout=60
    )


def test_sync_and_async_views_get_the_same_middleware(
    http: httpx.Client, daphne_server: DaphneServer
) -> None:
    sync_view = http.get(f"{API}/sessions")  # a DRF view
    async_view = http.get("/health")  # an async def view
    for response in (sync_view, async_view):
        assert response.status_code == 200, response.text
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "camera=()" in response.headers["Permissions-Policy"]

    missing = http.get(f"{API}/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"

    redirect = httpx.get(f"{daphne_server.url}/admin", timeout=30)  # CommonMiddleware
    assert redirect.status_code == 301 and redirect.headers["Location"] == "/admin/"

    css = httpx.get(f"{daphne_server.url}{settings.STATIC_URL}admin/css/base.css", timeout=30)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert b"body" in css.content


def test_cookie_authenticated_writes_need_the_csrf_token(
    daphne_server: DaphneServer, api_user: Any
) -> None:
    with _browser(daphne_server, api_user) as browser:
        assert browser.get(f"{API}/sessions").status_code == 200  # the session cookie works
        refused = browser.post(f"{API}/sessions", json={"agent": "shell"})
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.json()["error"]["message"]

        browser.get("/admin/login/")  # sets the csrftoken cookie
        token = browser.cookies["csrftoken"]
        accepted = browser.post(
            f"{API}/sessions",
            json={"agent": "shell"},
            headers={"X-CSRFToken": token, "Referer": f"{daphne_server.url}/"},
        )
        assert accepted.status_code == 201, accepted.text


def test_a_client_leaving_a_oneshot_wait_cancels_its_task(
    http: httpx.Client, daphne_server: DaphneServer, api_token: str
) -> None:
    """``/oneshot`` is an async view that waits for the task (on the event loop, not holding a
    thread): a client that hangs up still cancels it (``on_disconnect: cancel``)."""
    body = {
        "agent": "shell",
        "input": {"command": "sleep 60"},
        "on_disconnect": "cancel",
        "wait_timeout_s": 30,
    }
    headers = {"Authorization": f"Bearer {api_token}"}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up waiting and hangs up
        httpx.post(f"{daphne_server.url}{API}/oneshot", json=body, headers=headers, timeout=3)
    sessions = http.get(f"{API}/sessions").json()["results"]
    tasks = http.get(f"{API}/sessions/{sessions[0]['id']}/tasks").json()["results"]
    assert len(tasks) == 1
    deadline = time.monotonic() + 30
    while (task := http.get(f"{API}/tasks/{tasks[0]['id']}").json())["status"] not in TERMINAL:
        assert time.monotonic() < deadline, f"still {task['status']}"
        time.sleep(0.1)
    assert task["status"] == "cancelled"
    assert task["error"]["code"] == "cancelled"


def test_requests_reuse_their_threads_and_database_connections(
    http: httpx.Client, daphne_server: DaphneServer
) -> None:
    """Sequential API requests are served by reused threads whose database connections stay
    open (``RequestThreads``): PostgreSQL sees a handful of new connections for 40 requests,
    where Django's handler opened one per request. Concurrent requests still all succeed."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL sessions (CI runs it on PostgreSQL)")

    def sessions_opened() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            )
            return int(cursor.fetchone()[0])

    sid = http.post(f"{API}/sessions", json={"agent": "shell"}).json()["id"]
    for _ in range(5):  # warm: the first requests open the kept threads' connections
        assert http.get(f"{API}/sessions/{sid}").status_code == 200
    before = sessions_opened()
    for _ in range(40):
        assert http.get(f"{API}/sessions/{sid}").status_code == 200
    assert sessions_opened() - before <= 4  # this test's own checks, the server's background

    with httpx.Client(base_url=daphne_server.url, headers=http.headers, timeout=60) as other:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda _: other.get(f"{API}/sessions/{sid}").status_code,
                                  range(64)))  # fmt: skip
    assert codes == [200] * 64

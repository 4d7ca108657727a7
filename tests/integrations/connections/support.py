"""Helpers for the connection tests: this server as the OAuth2 provider (a django-oauth-toolkit
application whose redirect URI is the connections callback), a signed-in browser for a live
daphne, the consent round trip through the real consent page, and a small resource server on
loopback that echoes the bearer it receives (to prove the token is masked)."""

from __future__ import annotations

import contextlib
import html
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from django.conf import settings
from django.test import Client

from tests.api.oauth2_support import create_app
from tests.factories import make_user

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def register_app(base_url: str, name: str = "self", *, public: bool = False) -> dict[str, Any]:
    """A DOT application on this server whose only redirect URI is our callback for ``name``."""
    developer = make_user()
    args = ["--name", "Tools", "--grant", "authorization-code",
            "--redirect-uri", f"{base_url}/oauth/callback/{name}", "--user", developer.username]  # fmt: skip
    return create_app(*args, *(["--public"] if public else []))


def browser(base_url: str, user: Any) -> httpx.Client:
    """An httpx client carrying ``user``'s session cookie (signed in like a browser)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    return httpx.Client(
        base_url=base_url,
        cookies={settings.SESSION_COOKIE_NAME: cookie},
        headers={"Accept": "application/json"},
        timeout=30,
    )


_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def consent(page: httpx.Client, authorize_url: str, *, allow: bool = True) -> str:
    """Open the provider's consent page, press Authorize (or Cancel); the callback URL it
    redirects to."""
    shown = page.get(authorize_url, headers={"Accept": "text/html"})
    assert shown.status_code == 200, shown.text[:500]
    form = {name: html.unescape(value) for name, value in _HIDDEN.findall(shown.text)}
    assert "csrfmiddlewaretoken" in form and form["state"], form
    answer = page.post(
        "/o/authorize/",
        data=form | ({"allow": "Authorize"} if allow else {}),
        headers={"Accept": "text/html"},
    )
    assert answer.status_code == 302, answer.text[:500]
    return answer.headers["location"]


def register_provider(api: httpx.Client, base_url: str, app: dict[str, Any], **extra: Any) -> Any:
    """``POST /api/v1/oauth-providers`` for this server as provider ``self``; the response."""
    body = {
        "name": "self", "client_id": app["client_id"], "client_secret": app["client_secret"],
        "authorize_url": f"{base_url}/o/authorize/", "token_url": f"{base_url}/o/token/",
        "scopes": ["agents:read"], **extra,
    }  # fmt: skip
    response = api.post("/api/v1/oauth-providers", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def connect(base_url: str, page: httpx.Client) -> dict[str, Any]:
    """Connect ``page``'s user to provider ``self`` (redirect, consent, callback); the
    callback's JSON. Checks the authorize request on the way."""
    start = page.get("/oauth/connect/self")
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    params = query(authorize)
    assert authorize.startswith(f"{base_url}/o/authorize/?")
    assert params["response_type"] == "code"
    assert params["redirect_uri"] == f"{base_url}/oauth/callback/self"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43 and len(params["state"]) >= 32
    assert params["scope"] == "agents:read"
    back = consent(page, authorize)
    assert back.startswith(f"{base_url}/oauth/callback/self?")
    assert query(back)["state"] == params["state"]
    done = page.get(back)
    assert done.status_code == 200, done.text
    return dict(done.json())


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def wait_task(api: httpx.Client, task_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = api.get(f"/api/v1/tasks/{task_id}").json()
        if task["status"] in TERMINAL:
            return dict(task)
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish")


def run_task(api: httpx.Client, session_id: str, **body: Any) -> tuple[dict[str, Any], str]:
    """Start a task, wait for it; (the task, every event and the task as one JSON text)."""
    created = api.post(f"/api/v1/sessions/{session_id}/tasks", json={"input": {}, **body})
    assert created.status_code == 201, created.text
    task = wait_task(api, created.json()["id"])
    events = api.get(f"/api/v1/tasks/{task['id']}/events", params={"limit": 500})
    assert events.status_code == 200, events.text
    return task, json.dumps(events.json()) + json.dumps(task)


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        bearer = self.headers.get("Authorization", "")
        if self.path.startswith("/userinfo"):
            status, data = (200, {"login": "alice-at-provider"}) if bearer else (401, {})
        else:
            status, data = 200, {"authorization": bearer}
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def echo_server() -> Iterator[str]:
    """A resource server on 127.0.0.1 answering ``{"authorization": <the header>}`` (and
    ``/userinfo``); its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

"""Session sharing (issue 7 §4): share links (owner side and the public, token-only side), the
self-contained HTML export, and its upload to a share provider."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from sessions.export_text import ansi_to_html, markdown_to_html
from sessions.models import ShareLink
from sessions.services.events import event_append
from sessions.services.sessions import session_delete
from sessions.services.sharing import token_digest
from tests import factories, procs
from tests.api.helpers import API, error_of
from tests.transport.sse import iter_sse

pytestmark = pytest.mark.django_db

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40).decode()
XSS = "<script>alert('x')</script>"


def _share(client: APIClient, session: Any, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/sessions/{session.uuid}/share", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def shared(api_client, session) -> tuple[Any, str]:
    """``session`` with a chat turn, some output and a workspace file, shared; → (session,
    token)."""
    event_append(session=session, type="message.user", data={"text": "Hello **there**"})
    event_append(session=session, type="message.completed", data={"text": "Hi! `code`"})
    event_append(session=session, type="process.stdout", data={"process_id": "p", "text": "ok\n"})
    (session.workspace_path / "notes.txt").write_text("some notes")
    session.refresh_from_db()
    return session, _share(api_client, session)["token"]


# Owner side --------------------------------------------------------------------------------------


def test_create_list_and_revoke(api_client, session):
    expires = timezone.now() + timedelta(days=2)
    created = _share(api_client, session, expires_at=expires.isoformat())

    assert set(created) == {"id", "token", "url", "prefix", "expires_at", "created_at"}
    token = created["token"]
    assert len(token) >= 40 and created["prefix"] == token[:8]
    assert created["url"] == f"http://testserver{API}/shared/{token}"
    link = ShareLink.objects.get(uuid=created["id"])
    assert link.token_digest == token_digest(token) and token not in link.token_digest
    assert link.session_id == session.pk and link.created_by.username == "alice"

    listed = api_client.get(f"{API}/sessions/{session.uuid}/shares")
    assert listed.status_code == 200
    body = listed.json()
    assert body["count"] == 1
    (row,) = body["results"]
    assert row["id"] == created["id"] and row["active"] is True and row["revoked_at"] is None
    assert row["created_by"] == "alice"
    assert token not in listed.content.decode()

    revoke = api_client.delete(f"{API}/sessions/{session.uuid}/shares/{created['id']}")
    assert revoke.status_code == 204
    again = api_client.delete(f"{API}/sessions/{session.uuid}/shares/{created['id']}")
    assert again.status_code == 204  # idempotent
    (row,) = api_client.get(f"{API}/sessions/{session.uuid}/shares").json()["results"]
    assert row["active"] is False and row["revoked_at"]


def test_expiry_must_be_in_the_future(api_client, session):
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    response = api_client.post(
        f"{API}/sessions/{session.uuid}/share", {"expires_at": past}, format="json"
    )
    error = error_of(response, 400, "invalid_input")
    assert "expires_at" in error["details"]["fields"]


def test_unknown_share_ids_are_404(api_client, session, other_user):
    error_of(
        api_client.delete(f"{API}/sessions/{session.uuid}/shares/not-a-uuid"),
        404,
        "share_not_found",
    )
    # A link of another session cannot be revoked through this one.
    other = factories.make_session(session.owner)
    link = _share(api_client, other)
    url = f"{API}/sessions/{session.uuid}/shares/{link['id']}"
    error_of(api_client.delete(url), 404, "share_not_found")


def test_a_stranger_gets_404_on_every_owner_endpoint(other_client, api_client, session):
    link = _share(api_client, session)
    base = f"{API}/sessions/{session.uuid}"
    error_of(other_client.post(f"{base}/share", {}, format="json"), 404)
    error_of(other_client.get(f"{base}/shares"), 404)
    error_of(other_client.delete(f"{base}/shares/{link['id']}"), 404)
    error_of(other_client.get(f"{base}/export.html"), 404)
    error_of(other_client.post(f"{base}/export"), 404)


def test_anonymous_callers_are_401_on_the_owner_endpoints(anon_client, session):
    error_of(anon_client.post(f"{API}/sessions/{session.uuid}/share"), 401)
    error_of(anon_client.get(f"{API}/sessions/{session.uuid}/shares"), 401)
    error_of(anon_client.get(f"{API}/sessions/{session.uuid}/export.html"), 401)


def test_a_viewer_lists_and_exports_but_cannot_share(user, api_client, session):
    viewer = factories.make_user("vera")
    factories.add_member(factories.team_of(user), viewer, "viewer")
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {factories.make_token(viewer, scopes=['sessions:write'], team=factories.team_of(user))}"
    )
    link = _share(api_client, session)
    base = f"{API}/sessions/{session.uuid}"

    assert client.get(f"{base}/shares").json()["count"] == 1
    assert client.get(f"{base}/export.html").status_code == 200
    error_of(client.post(f"{base}/share", {}, format="json"), 403, "forbidden")
    error_of(client.delete(f"{base}/shares/{link['id']}"), 403, "forbidden")
    error_of(client.post(f"{base}/export"), 403, "forbidden")


def test_a_read_only_key_cannot_share(user, session):
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user, scopes=['sessions:read'])}"
    )
    base = f"{API}/sessions/{session.uuid}"
    assert client.get(f"{base}/shares").status_code == 200
    error_of(client.post(f"{base}/share", {}, format="json"), 403, "insufficient_scope")


# Public side -------------------------------------------------------------------------------------


def test_the_token_alone_reads_the_session(anon_client, shared):
    session, token = shared
    base = f"{API}/shared/{token}"

    summary = anon_client.get(base)
    assert summary.status_code == 200
    assert summary["Cache-Control"] == "no-store"
    assert summary["Referrer-Policy"] == "no-referrer"
    body = summary.json()
    assert body["id"] == str(session.uuid) and body["name"] == "first"
    assert body["agent"]["slug"] == "shell" and body["last_seq"] == session.last_seq
    assert body["task_count"] == 0 and body["tasks"] == []
    assert body["links"]["events"] == f"{base}/events"

    events = anon_client.get(f"{base}/events", {"after": 1, "limit": 2}).json()
    assert [e["seq"] for e in events["events"]] == [2, 3]
    assert events["events"][0]["type"] == "message.user"
    assert events["next_after"] == 3 and events["last_seq"] == session.last_seq

    messages = anon_client.get(f"{base}/messages").json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "Hello **there**"),
        ("assistant", "Hi! `code`"),
    ]

    files = anon_client.get(f"{base}/files").json()
    assert [e["path"] for e in files["entries"]] == ["notes.txt"]
    download = anon_client.get(f"{base}/files/notes.txt", HTTP_ACCEPT="application/octet-stream")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"some notes"
    assert "attachment" in download["Content-Disposition"]

    export = anon_client.get(f"{base}/export.html")
    assert export.status_code == 200
    assert export["Content-Type"].startswith("text/html")
    assert "Hello <strong>there</strong>" in export.content.decode()


def test_a_credential_sent_along_is_ignored(shared):
    _, token = shared
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")
    assert client.get(f"{API}/shared/{token}").status_code == 200


def test_a_task_shows_in_the_summary(anon_client, shared):
    session, token = shared
    task = factories.make_task(session)
    body = anon_client.get(f"{API}/shared/{token}").json()
    assert body["task_count"] == 1
    assert body["tasks"][0]["id"] == str(task.uuid)
    assert body["tasks"][0]["status"] == "queued"


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("post", ""),
        ("patch", ""),
        ("delete", ""),
        ("post", "/events"),
        ("post", "/messages"),
        ("post", "/files"),
        ("put", "/files/notes.txt"),
        ("delete", "/files/notes.txt"),
        ("post", "/export.html"),
        ("post", "/events/stream"),
    ],
)
def test_nothing_is_writable_through_a_share(anon_client, shared, method, suffix):
    session, token = shared
    response = getattr(anon_client, method)(f"{API}/shared/{token}{suffix}", {}, format="json")
    assert response.status_code in (404, 405), response.content
    assert (session.workspace_path / "notes.txt").read_text() == "some notes"
    assert ShareLink.objects.get().revoked_at is None


def test_a_token_reaches_no_other_session(anon_client, api_client, shared, user, other_user):
    session, token = shared
    other = factories.make_session(user)
    (other.workspace_path / "secret.txt").write_text("secret")
    base = f"{API}/shared/{token}/files"

    for path in (f"../{other.uuid}/secret.txt", f"%2E%2E/{other.uuid}/secret.txt"):
        response = anon_client.get(f"{base}/{path}")
        assert response.status_code in (400, 404), response.content
        assert b"secret" not in b"".join(getattr(response, "streaming_content", [response.content]))
    error_of(anon_client.get(base, {"path": f"../{other.uuid}"}), 400, "invalid_path")
    # The owner-side endpoints of the same session stay closed to the token holder.
    error_of(anon_client.get(f"{API}/sessions/{session.uuid}/events"), 401)
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    error_of(anon_client.get(f"{API}/sessions/{session.uuid}/events"), 401)


@pytest.mark.parametrize("suffix", ["", "/events", "/messages", "/files", "/export.html"])
def test_unknown_revoked_and_expired_tokens_are_404(anon_client, api_client, shared, suffix):
    session, token = shared
    error_of(anon_client.get(f"{API}/shared/not-a-token{suffix}"), 404, "share_not_found")

    ShareLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    error_of(anon_client.get(f"{API}/shared/{token}{suffix}"), 404, "share_not_found")

    ShareLink.objects.update(expires_at=None)
    assert anon_client.get(f"{API}/shared/{token}{suffix}").status_code == 200
    link = api_client.get(f"{API}/sessions/{session.uuid}/shares").json()["results"][0]
    api_client.delete(f"{API}/sessions/{session.uuid}/shares/{link['id']}")
    error_of(anon_client.get(f"{API}/shared/{token}{suffix}"), 404, "share_not_found")


def test_a_deleted_session_is_no_longer_shared(anon_client, shared):
    session, token = shared
    session_delete(session=session)
    error_of(anon_client.get(f"{API}/shared/{token}"), 404, "share_not_found")


async def test_the_stream_answers_404_for_a_bad_token(async_client):
    response = await async_client.get(f"{API}/shared/nope/events/stream")
    assert response.status_code == 404
    assert json.loads(response.content)["error"]["code"] == "share_not_found"


# The HTML export ----------------------------------------------------------------------------------


def _export(api_client: APIClient, session: Any) -> str:
    response = api_client.get(f"{API}/sessions/{session.uuid}/export.html")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="session-[a-z0-9-]+-[0-9a-f]{8}\.html"',
        response["Content-Disposition"],
    )
    assert "default-src 'none'" in response["Content-Security-Policy"]
    return response.content.decode()


def _no_external_refs(page: str) -> None:
    assert not re.search(r"""(src|href|action|srcset)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_the_export_is_self_contained_and_escapes_everything(api_client, session, settings):
    session.name = f"name {XSS}"
    session.save()
    task = factories.make_task(session)
    event_append(session=session, task=task, type="message.user", data={"text": f"hi {XSS}"})
    event_append(session=session, task=task, type="log", data={"message": XSS, "n": 1})
    stdout = "\x1b[1;31mred bold\x1b[0m plain \x1b]0;osc-payload\x07<b>x</b>\n"
    event_append(session=session, task=task, type="process.stdout", data={"text": stdout})
    bundle = {"image/png": PNG, "text/plain": "<Figure>"}
    event_append(session=session, task=task, type="output.display", data={"data": bundle})
    html_out = '<b>bold</b><img src="http://evil.example/x.png"><script>alert(1)</script>'
    event_append(session=session, type="output.display", data={"data": {"text/html": html_out}})
    event_append(
        session=session, type="output.display", data={"data": {"application/json": {"a": [1]}}}
    )
    event_append(
        session=session,
        type="output.error",
        data={"ename": "ValueError", "evalue": XSS, "traceback": ["\x1b[0;31mTraceback\x1b[0m"]},
    )
    (session.workspace_path / "data").mkdir()
    (session.workspace_path / "data" / "<img src=x onerror=alert(1)>.txt").write_text("small file")
    (session.workspace_path / "big.bin").write_bytes(b"\x00" * 2048)
    settings.SHARE_EXPORT_MAX_FILE_BYTES = 1024

    page = _export(api_client, session)

    _no_external_refs(page)
    assert XSS not in page and "<script" not in page and "<img src=x" not in page
    assert "data/&lt;img src=x onerror=alert(1)&gt;.txt" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert f'src="data:image/png;base64,{PNG}"' in page
    # HTML output: inside a sandboxed srcdoc iframe, attribute-escaped.
    assert 'sandbox="" referrerpolicy="no-referrer" srcdoc="&lt;b&gt;bold&lt;/b&gt;' in page
    assert '<span class="ansi-bold ansi-fg-red">red bold</span> plain &lt;b&gt;x&lt;/b&gt;' in page
    assert "osc-payload" not in page  # the OSC sequence (a terminal title) is stripped
    assert "\x1b" not in page
    assert "&quot;a&quot;: [" in page  # JSON pretty-printed
    assert "ValueError" in page and ">Traceback</span>" in page
    small = base64.b64encode(b"small file").decode()
    assert f'href="data:text/plain;base64,{small}"' in page
    assert "big.bin" in page and "not embedded" in page
    assert base64.b64encode(b"\x00" * 2048).decode() not in page
    assert f"#{session.last_seq}" in page  # every event is in the timeline
    assert page.count('<details class="event') == session.last_seq


def test_a_large_output_kept_in_an_artifact_is_embedded(api_client, session, settings):
    settings.EVENT_INLINE_MAX_BYTES = 256
    big_png = base64.b64encode(b"\x89PNG" + bytes(range(256)) * 8).decode()
    event = event_append(
        session=session, type="output.display", data={"data": {"image/png": big_png}}
    )
    assert event.data["truncated"] is True  # the payload went to an artifact

    page = _export(api_client, session)

    assert f'src="data:image/png;base64,{big_png}"' in page


def test_the_export_stops_at_the_event_limit(api_client, session, settings):
    for n in range(5):
        event_append(session=session, type="log", data={"n": n})
    settings.SHARE_EXPORT_MAX_EVENTS = 3
    page = _export(api_client, session)
    assert page.count('<details class="event') == 3
    assert "3 later events not included" in page


def test_markdown_and_ansi_rendering_is_safe():
    md = str(
        markdown_to_html(
            f'# Title {XSS}\n\n- **a** [link](https://x.example/"onclick=1)\n\n```\n{XSS}\n```'
        )
    )
    assert "<script" not in md and "<h3>Title &lt;script&gt;" in md
    assert "<li><strong>a</strong> link <span" in md and "href" not in md
    assert "<pre><code>&lt;script&gt;" in md
    assert str(ansi_to_html("\x1b[38;5;200mx\x1b[0m\x1b[2J<y>")) == "x&lt;y&gt;"
    assert str(ansi_to_html("\x1b[92;44mz")) == '<span class="ansi-fg-bgreen ansi-bg-blue">z</span>'


# Share provider -----------------------------------------------------------------------------------


class _Provider:
    """A share provider on 127.0.0.1 recording what it received."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.answer: bytes = b'{"url": "https://share.example/s/abc"}'
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                provider.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length),
                    }
                )
                self.send_response(provider.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(provider.answer)))
                self.end_headers()
                self.wfile.write(provider.answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/upload"


@pytest.fixture
def provider(settings) -> Iterator[_Provider]:
    p = _Provider()
    thread = threading.Thread(target=p.server.serve_forever, daemon=True)
    thread.start()
    settings.SHARE_PROVIDER_URL = p.url
    settings.SHARE_PROVIDER_TOKEN = "provider-secret"
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    try:
        yield p
    finally:
        p.server.shutdown()
        p.server.server_close()
        thread.join(5)


def test_upload_needs_a_configured_provider(api_client, session, settings):
    settings.SHARE_PROVIDER_URL = ""
    response = api_client.post(f"{API}/sessions/{session.uuid}/export")
    error_of(response, 400, "share_provider_not_configured")


def test_upload_posts_the_export_and_returns_the_url(api_client, session, provider):
    event_append(session=session, type="log", data={"message": "uploaded"})

    response = api_client.post(f"{API}/sessions/{session.uuid}/export")

    assert response.status_code == 201, response.content
    assert response.json() == {"url": "https://share.example/s/abc"}
    (request,) = provider.requests
    assert request["path"] == "/upload"
    assert request["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert request["headers"]["Authorization"] == "Bearer provider-secret"
    assert "attachment; filename=" in request["headers"]["Content-Disposition"]
    assert request["body"].startswith(b"<!DOCTYPE html>") and b"uploaded" in request["body"]


def test_upload_to_a_private_address_is_refused_unless_allowed(
    api_client, session, provider, settings
):
    settings.OUTBOUND_ALLOWED_HOSTS = []
    response = api_client.post(f"{API}/sessions/{session.uuid}/export")
    error_of(response, 400, "outbound_refused")
    assert provider.requests == []


@pytest.mark.parametrize(
    ("status", "answer"),
    [(500, b'{"url": "https://x.example"}'), (200, b"not json"), (200, b'{"url": "javascript:1"}')],
)
def test_a_failing_provider_is_502(api_client, session, provider, status, answer):
    provider.status, provider.answer = status, answer
    response = api_client.post(f"{API}/sessions/{session.uuid}/export")
    error_of(response, 502, "share_provider_failed")


# SSE over a real daphne ---------------------------------------------------------------------------


@pytest.fixture
def daphne_url(transactional_db: Any, tmp_path: Path) -> Iterator[str]:
    port = procs.free_port()
    proc = procs.start_daphne(
        port, tmp_path / "daphne.log", STREAM_HEARTBEAT_S=0.5, SHARE_STREAM_RECHECK_S=0.5
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        procs.stop(proc)


@pytest.mark.transport
def test_sse_over_a_share_token_ends_when_the_link_is_revoked(daphne_url, user, session):
    event_append(session=session, type="log", data={"message": "one"})
    event_append(session=session, type="log", data={"message": "two"})
    session.refresh_from_db()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user)}")
    token = _share(api, session)["token"]

    received: list[dict[str, Any]] = []
    with httpx.Client(base_url=daphne_url, timeout=30) as http:
        with http.stream(
            "GET", f"{API}/shared/{token}/events/stream", params={"after": 1}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-store"
            revoked_at = None
            for message in iter_sse(response):
                if message["event"] == "end":
                    break
                if "id" in message:
                    received.append(message["data"])
                if revoked_at is None and len(received) == session.last_seq - 1:
                    ShareLink.objects.update(revoked_at=timezone.now())
                    revoked_at = time.monotonic()
            assert message["data"] == {"reason": "share_revoked"}
            assert revoked_at is not None and time.monotonic() - revoked_at < 10
        assert [e["seq"] for e in received] == list(range(2, session.last_seq + 1))
        assert received[-1]["data"] == {"message": "two"}
        gone = http.get(f"{API}/shared/{token}/events/stream")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "share_not_found"

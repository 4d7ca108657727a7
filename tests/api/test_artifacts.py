"""Artifacts over the API: list (a session's, a task's), metadata, content download (safe
headers for active content; a presigned redirect on S3), delete, and the shared-link route.

Artifacts are written for real through ``artifact_create`` (or by ``event_append`` moving a
large payload out of an event) into the per-test MEDIA_ROOT; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import AuditEntry
from sessions.models import Artifact, Session
from sessions.services.artifacts import artifact_create, artifact_reference
from sessions.services.events import event_append
from sessions.services.sessions import session_delete
from sessions.services.sharing import share_link_create, share_link_revoke
from tests import factories
from tests import test_storage_s3 as s3_support
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
HTML = b"<!doctype html><script>fetch('/api/v1/api-keys')</script><p>report</p>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def _body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user)}")
    return client


@pytest.fixture
def task(session: Session) -> Any:
    return factories.finish_task(factories.make_task(session), result={"ok": True})


@pytest.fixture
def png(session: Session, task: Any) -> Artifact:
    return artifact_create(
        session=session, name="plot.png", content=PNG, content_type="image/png", task_id=task.pk
    )


@pytest.fixture
def viewer_client(session: Session) -> APIClient:
    viewer = factories.make_user("vic")
    factories.add_member(session.team, viewer, "viewer")
    return _client(viewer)


@pytest.fixture
def member_client(session: Session) -> APIClient:
    member = factories.make_user("bob")
    factories.add_member(session.team, member, "member")
    return _client(member)


def _stored(artifact: Artifact) -> Path:
    return Path(settings.MEDIA_ROOT) / artifact.file.name


# Listing and metadata ---------------------------------------------------------------------------


def test_a_session_lists_its_artifacts_newest_first(api_client, session, task, png):
    log = artifact_create(session=session, name="run.log", content=b"line 1\nline 2\n",
                          content_type="text/plain")  # fmt: skip
    other_session = factories.make_session(session.owner, agent=session.agent)
    artifact_create(session=other_session, name="elsewhere.txt", content=b"x")

    response = api_client.get(f"{API}/sessions/{session.uuid}/artifacts")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["count"] == 2 and body["next"] is None
    assert [a["name"] for a in body["results"]] == ["run.log", "plot.png"]
    first, second = body["results"]
    assert first == {
        "id": str(log.uuid),
        "name": "run.log",
        "size": 14,
        "content_type": "text/plain",
        "sha256": hashlib.sha256(b"line 1\nline 2\n").hexdigest(),
        "session_id": str(session.uuid),
        "task_id": None,
        "created_at": first["created_at"],
        "url": f"http://testserver{API}/artifacts/{log.uuid}/content",
    }
    assert second["task_id"] == str(task.uuid)
    assert second["size"] == len(PNG)


def test_the_list_pages_and_filters_by_task(api_client, session, task, png):
    for n in range(3):
        artifact_create(session=session, name=f"untasked-{n}.txt", content=b"x")
    url = f"{API}/sessions/{session.uuid}/artifacts"

    page = api_client.get(url, {"limit": 2}).json()
    by_task = api_client.get(url, {"task": str(task.uuid)}).json()
    unknown_task = api_client.get(url, {"task": "00000000-0000-0000-0000-000000000000"}).json()

    assert page["count"] == 4 and len(page["results"]) == 2 and "offset=2" in page["next"]
    assert [a["id"] for a in by_task["results"]] == [str(png.uuid)]
    assert unknown_task["count"] == 0
    error = error_of(api_client.get(url, {"task": "nope"}), 400, "invalid_input")
    assert "task" in error["details"]["fields"]


def test_a_task_lists_its_artifacts(api_client, session, task, png):
    artifact_create(session=session, name="other.txt", content=b"x")

    response = api_client.get(f"{API}/tasks/{task.uuid}/artifacts")

    assert response.status_code == 200, response.json()
    assert [a["id"] for a in response.json()["results"]] == [str(png.uuid)]
    error_of(api_client.get(f"{API}/tasks/not-a-uuid/artifacts"), 404, "not_found")


def test_metadata_of_one_artifact(api_client, png):
    response = api_client.get(f"{API}/artifacts/{png.uuid}")

    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "plot.png"
    assert response.json()["sha256"] == hashlib.sha256(PNG).hexdigest()
    error_of(api_client.get(f"{API}/artifacts/not-a-uuid"), 404, "not_found")
    error_of(api_client.get(f"{API}/artifacts/{uuid.uuid4()}"), 404, "not_found")


# Content ----------------------------------------------------------------------------------------


def test_an_image_is_served_inline_with_its_bytes(api_client, png):
    response = api_client.get(f"{API}/artifacts/{png.uuid}/content")

    assert response.status_code == 200
    assert _body(response) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Length"] == str(len(PNG))
    assert response["Content-Disposition"] == 'inline; filename="plot.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert response["ETag"] == f'"{hashlib.sha256(PNG).hexdigest()}"'


@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        ("report.html", HTML, "text/html; charset=utf-8"),
        ("logo.svg", SVG, "image/svg+xml"),
        ("page.xhtml", HTML, "application/xhtml+xml"),
        ("doc.pdf", b"%PDF-1.4\n", "application/pdf"),
    ],
)
def test_active_content_is_an_attachment_in_a_sandbox(
    api_client, session, name, content, content_type
):
    artifact = artifact_create(session=session, name=name, content=content,
                               content_type=content_type)  # fmt: skip

    response = api_client.get(f"{API}/artifacts/{artifact.uuid}/content")

    assert response.status_code == 200
    assert _body(response) == content
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    assert response["X-Content-Type-Options"] == "nosniff"
    csp = response["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp


def test_a_malformed_type_or_name_cannot_break_the_headers(api_client, session):
    artifact = artifact_create(session=session, name="sub/evil\r\nSet-Cookie: x=1.html",
                               content=HTML, content_type="text/html\r\nX-Evil: 1")  # fmt: skip

    response = api_client.get(f"{API}/artifacts/{artifact.uuid}/content")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert (
        # The directory part was dropped when it was stored; the CR LF is replaced here.
        response["Content-Disposition"] == 'attachment; filename="evil__Set-Cookie: x=1.html"'
    )
    assert "X-Evil" not in response and "Set-Cookie" not in response
    assert _body(response) == HTML


def test_a_large_event_payload_is_downloadable_from_its_reference(api_client, session, settings):
    settings.EVENT_INLINE_MAX_BYTES = 1024
    event = event_append(session=session, type="process.stdout",
                         data={"process_id": "p", "text": "y" * 5000})  # fmt: skip
    ref = event.data["artifact"]

    listed = api_client.get(f"{API}/sessions/{session.uuid}/artifacts").json()["results"]
    response = api_client.get(f"{API}/artifacts/{ref['id']}/content")

    assert [a["id"] for a in listed] == [ref["id"]]
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'inline; filename="process.stdout.json"'
    assert json.loads(_body(response)) == {"process_id": "p", "text": "y" * 5000}
    assert int(response["Content-Length"]) == ref["size"]


def test_the_reference_events_carry_points_at_the_content(api_client, session, png):
    ref = artifact_reference(png)

    response = api_client.get(f"{API}/artifacts/{ref['id']}/content")

    assert _body(response) == PNG and int(response["Content-Length"]) == ref["size"]


def test_a_file_gone_from_storage_is_404(api_client, png):
    _stored(png).unlink()

    error = error_of(api_client.get(f"{API}/artifacts/{png.uuid}/content"), 404)

    assert error["code"] == "artifact_content_missing"
    assert api_client.get(f"{API}/artifacts/{png.uuid}").status_code == 200  # the row stays


def test_an_unusual_accept_header_still_gets_the_file_or_a_json_error(api_client, png):
    response = api_client.get(f"{API}/artifacts/{png.uuid}/content", HTTP_ACCEPT="image/*")
    missing = api_client.get(f"{API}/artifacts/{uuid.uuid4()}/content", HTTP_ACCEPT="image/*")

    assert response.status_code == 200 and _body(response) == PNG
    error_of(missing, 404, "not_found")


# Access -----------------------------------------------------------------------------------------


def test_a_stranger_gets_404_everywhere(other_client, session, task, png):
    for response in (
        other_client.get(f"{API}/sessions/{session.uuid}/artifacts"),
        other_client.get(f"{API}/tasks/{task.uuid}/artifacts"),
        other_client.get(f"{API}/artifacts/{png.uuid}"),
        other_client.get(f"{API}/artifacts/{png.uuid}/content"),
        other_client.delete(f"{API}/artifacts/{png.uuid}"),
    ):
        error_of(response, 404, "not_found")
    assert _stored(png).exists()


def test_anonymous_is_401(anon_client, png):
    error_of(anon_client.get(f"{API}/artifacts/{png.uuid}/content"), 401)


def test_a_viewer_reads_but_cannot_delete(viewer_client, session, png):
    listed = viewer_client.get(f"{API}/sessions/{session.uuid}/artifacts")
    content = viewer_client.get(f"{API}/artifacts/{png.uuid}/content")

    assert listed.status_code == 200 and listed.json()["count"] == 1
    assert content.status_code == 200 and _body(content) == PNG
    error = error_of(viewer_client.delete(f"{API}/artifacts/{png.uuid}"), 403, "forbidden")
    assert error["details"] == {"role": "viewer", "required_role": "member"}
    assert Artifact.objects.filter(pk=png.pk).exists() and _stored(png).exists()


def test_a_read_only_key_cannot_delete(user, png):
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user, scopes=['sessions:read'])}"
    )

    assert client.get(f"{API}/artifacts/{png.uuid}/content").status_code == 200
    error_of(client.delete(f"{API}/artifacts/{png.uuid}"), 403, "insufficient_scope")


def test_a_member_deletes_it_with_its_file_and_an_audit_entry(
    member_client, api_client, session, png, django_capture_on_commit_callbacks
):
    path = _stored(png)
    assert path.read_bytes() == PNG

    with django_capture_on_commit_callbacks(execute=True):
        response = member_client.delete(f"{API}/artifacts/{png.uuid}")

    assert response.status_code == 204
    assert not path.exists()
    assert not Artifact.objects.filter(pk=png.pk).exists()
    entry = AuditEntry.objects.get(action="artifact.delete")
    assert (entry.actor.username, entry.team_id, entry.target_id) == (
        "bob",
        session.team_id,
        str(png.uuid),
    )
    assert entry.details == {"session": str(session.uuid), "size": len(PNG)}
    error_of(api_client.get(f"{API}/artifacts/{png.uuid}/content"), 404, "not_found")
    error_of(member_client.delete(f"{API}/artifacts/{png.uuid}"), 404, "not_found")


def test_artifacts_of_a_deleted_session_are_hidden(api_client, session, task, png):
    session_delete(session=session)

    for response in (
        api_client.get(f"{API}/sessions/{session.uuid}/artifacts"),
        api_client.get(f"{API}/tasks/{task.uuid}/artifacts"),
        api_client.get(f"{API}/artifacts/{png.uuid}"),
        api_client.get(f"{API}/artifacts/{png.uuid}/content"),
    ):
        error_of(response, 404, "not_found")


# Shared sessions --------------------------------------------------------------------------------


def _shared_url(token: str, artifact_id: Any) -> str:
    return f"{API}/shared/{token}/artifacts/{artifact_id}/content"


def test_a_share_link_reads_the_artifacts_its_events_refer_to(anon_client, session, settings):
    settings.EVENT_INLINE_MAX_BYTES = 1024
    event = event_append(session=session, type="tool.result", data={"output": "z" * 4000})
    report = artifact_create(session=session, name="report.html", content=HTML,
                             content_type="text/html")  # fmt: skip
    link, token = share_link_create(session=session, user=session.owner)
    events = anon_client.get(f"{API}/shared/{token}/events").json()["events"]
    ref = next(e for e in events if e["seq"] == event.seq)["data"]["artifact"]

    payload = anon_client.get(_shared_url(token, ref["id"]))
    page = anon_client.get(_shared_url(token, report.uuid))

    assert payload.status_code == 200
    assert json.loads(_body(payload)) == {"output": "z" * 4000}
    assert payload["Cache-Control"] == "no-store"
    assert payload["Referrer-Policy"] == "no-referrer"
    assert page.status_code == 200 and _body(page) == HTML
    assert page["Content-Disposition"] == 'attachment; filename="report.html"'
    assert page["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in page["Content-Security-Policy"]

    share_link_revoke(link=link)
    error_of(anon_client.get(_shared_url(token, report.uuid)), 404, "share_not_found")


def test_a_share_link_reaches_no_other_sessions_artifacts(anon_client, session, png):
    other = factories.make_session(session.owner, agent=session.agent)
    elsewhere = artifact_create(session=other, name="secret.txt", content=b"secret")
    _, token = share_link_create(session=session, user=session.owner)

    assert anon_client.get(_shared_url(token, png.uuid)).status_code == 200
    error_of(anon_client.get(_shared_url(token, elsewhere.uuid)), 404, "not_found")
    error_of(anon_client.get(_shared_url(token, "nope")), 404, "not_found")
    error_of(anon_client.get(_shared_url("bad-token", png.uuid)), 404, "share_not_found")


# Admin ------------------------------------------------------------------------------------------


def test_the_admin_lists_and_deletes_artifacts_with_their_files(
    session, png, django_capture_on_commit_callbacks
):
    client = Client()
    client.force_login(factories.make_user("root", is_staff=True, is_superuser=True))
    path = _stored(png)

    listing = client.get(reverse("admin:agent_sessions_artifact_changelist"))
    page = client.get(reverse("admin:agent_sessions_artifact_change", args=[png.pk]))
    with django_capture_on_commit_callbacks(execute=True):
        deleted = client.post(
            reverse("admin:agent_sessions_artifact_delete", args=[png.pk]), {"post": "yes"}
        )

    assert listing.status_code == 200 and "plot.png" in listing.content.decode()
    assert page.status_code == 200 and png.file.name in page.content.decode()
    assert client.get(reverse("admin:agent_sessions_artifact_add")).status_code == 403
    assert deleted.status_code == 302
    assert not Artifact.objects.filter(pk=png.pk).exists() and not path.exists()
    assert AuditEntry.objects.filter(action="admin.delete", target_id=str(png.uuid)).exists()


# S3 (moto) --------------------------------------------------------------------------------------

moto_endpoint = s3_support.moto_endpoint
bucket = s3_support.bucket


@pytest.fixture
def s3(settings: Any, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, bucket: str) -> str:
    settings.STORAGES = s3_support._s3_storages(monkeypatch, moto_endpoint, bucket)
    return bucket


def _fetch(url: str) -> tuple[bytes, Any]:
    """GET ``url`` over real HTTP with no credential, as a browser following the redirect;
    → (body, headers looked up case-insensitively)."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read(), reply.headers


def test_on_s3_the_content_is_a_redirect_to_a_short_presigned_url(
    api_client, anon_client, session, s3, moto_endpoint
):
    report = artifact_create(session=session, name="report.html", content=HTML,
                             content_type="text/html")  # fmt: skip
    image = artifact_create(session=session, name="plot.png", content=PNG,
                            content_type="image/png")  # fmt: skip
    assert default_storage.exists(report.file.name)
    assert not Path(settings.MEDIA_ROOT).exists()  # nothing written locally

    response = api_client.get(f"{API}/artifacts/{report.uuid}/content")

    assert response.status_code == 302
    assert response["Cache-Control"] == "no-store"
    location = response["Location"]
    assert location.startswith(f"{moto_endpoint}/{s3}/")
    assert parse_qs(urlsplit(location).query)["X-Amz-Expires"] == ["60"]
    body, headers = _fetch(location)
    assert body == HTML
    assert headers["Content-Type"] == "text/html"
    assert headers["Content-Disposition"] == 'attachment; filename="report.html"'

    image_location = api_client.get(f"{API}/artifacts/{image.uuid}/content")["Location"]
    body, headers = _fetch(image_location)
    assert body == PNG
    assert headers["Content-Disposition"] == 'inline; filename="plot.png"'

    _, token = share_link_create(session=session, user=session.owner)
    shared = anon_client.get(_shared_url(token, report.uuid))
    assert shared.status_code == 302 and shared["Referrer-Policy"] == "no-referrer"
    assert _fetch(shared["Location"])[0] == HTML

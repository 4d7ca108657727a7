"""A session's sandbox end to end: tasks reuse it, it stops when idle and starts again with a
progress event, and the REST API (state, exec, stop, background processes) drives it, all on
real bubblewrap sandboxes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from sandboxes.models import Sandbox
from sandboxes.registry import get_backend
from sandboxes.services import sandbox_update
from sessions.models import Session
from sessions.services.sessions import session_delete
from tests.helpers import events_of, stdout_of, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]
API = "/api/v1"


def sse(response: Any) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a finished SSE response."""
    body = b"".join(response).decode()  # the sync client consumes the async stream
    frames = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        frames.append((fields["event"], json.loads(fields["data"])))
    return frames


async def test_tasks_of_a_session_share_its_sandbox_which_restarts_after_idle(
    executor: Any, make_task: Any, session: Session
) -> None:
    first = await wait_terminal(
        await sync_to_async(make_task)("echo one > /tmp/shared; echo $PPID")
    )
    executor.kick()
    second = await sync_to_async(make_task)("cat /tmp/shared")
    executor.kick()
    second = await wait_terminal(second)
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert await sync_to_async(stdout_of)(second) == "one\n"  # same sandbox: same private /tmp
    types1 = [e.type for e in await sync_to_async(events_of)(first)]
    types2 = [e.type for e in await sync_to_async(events_of)(second)]
    assert (
        types1.index("sandbox.starting")
        < types1.index("sandbox.started")
        < types1.index("process.started")
    )
    assert "sandbox.starting" not in types2
    # Only a start is a phase of its own, just before its sandbox.starting.
    events1 = await sync_to_async(events_of)(first)
    starting = next(i for i, e in enumerate(events1) if e.type == "sandbox.starting")
    phase = events1[starting - 1]
    assert (phase.type, phase.data.get("phase")) == ("task.status", "starting_sandbox")
    phases2 = [e.data.get("phase") for e in await sync_to_async(events_of)(second)
               if e.type == "task.status"]  # fmt: skip
    assert phases2 == ["queued", "starting", "executing", "succeeded"]
    row = await Sandbox.objects.aget(session=session)
    assert row.start_count == 1 and row.tier == "bubblewrap"

    await sync_to_async(sandbox_update)(session=session, idle_timeout_s=1)
    third = await sync_to_async(make_task)("true")  # restarts it with the new idle timeout
    executor.kick()
    await wait_terminal(third)
    deadline = time.monotonic() + 10
    while await get_backend().is_running(str(session.uuid)):
        assert time.monotonic() < deadline, "the idle sandbox did not stop"
        await sync_to_async(time.sleep)(0.1)
    fourth = await sync_to_async(make_task)("cat /tmp/shared 2>&1; ls")
    executor.kick()
    fourth = await wait_terminal(fourth)
    assert fourth.status == "succeeded"
    events = await sync_to_async(events_of)(fourth)
    started = next(e for e in events if e.type == "sandbox.started")
    assert started.data["tier"] == "bubblewrap" and started.data["duration_ms"] > 0
    # A fresh sandbox (empty /tmp) on the same workspace.
    assert "No such file" in await sync_to_async(stdout_of)(fourth)
    await get_backend().stop(str(session.uuid))


@pytest.fixture
def client(owner: Any) -> APIClient:
    api = APIClient()
    api.force_authenticate(owner)
    return api


def test_sandbox_rest_state_exec_stop(client: APIClient, session: Session) -> None:
    url = f"{API}/sessions/{session.uuid}/sandbox"
    state = client.get(url).json()
    assert state["state"] == "stopped" and state["backend"] == "local"
    assert state["idle_policy"] == "stop" and state["limits"]["memory_mb"] > 0

    result = client.post(
        f"{url}/exec", {"command": "echo hi; echo oops >&2; exit 3"}, format="json"
    )
    assert result.status_code == 200, result.json()
    body = result.json()
    assert (body["stdout"], body["stderr"], body["exit_code"]) == ("hi\n", "oops\n", 3)
    assert not body["timed_out"] and not body["truncated"]

    result = client.post(
        f"{url}/exec", {"argv": ["head", "-c", "5000", "/dev/zero"], "max_output_bytes": 100},
        format="json",
    )  # fmt: skip
    assert result.json()["truncated"] is True and len(result.json()["stdout"]) == 100

    result = client.post(f"{url}/exec", {"command": "sleep 30", "timeout_s": 0.5}, format="json")
    assert result.json()["timed_out"] is True and result.json()["duration_ms"] < 10_000

    streamed = client.post(
        f"{url}/exec", {"command": "echo a; echo b >&2", "stream": True}, format="json"
    )
    assert streamed["Content-Type"] == "text/event-stream"
    frames = sse(streamed)
    assert ("stdout", {"data": "a\n"}) in frames and ("stderr", {"data": "b\n"}) in frames
    assert frames[-1][0] == "exit" and frames[-1][1]["exit_code"] == 0

    running = client.get(url).json()
    assert running["state"] == "running" and running["usage"]["pids"] >= 2
    assert running["start_count"] == 1  # every exec above used the same sandbox

    patched = client.patch(url, {"idle_policy": "keep"}, format="json").json()
    assert patched["idle_policy"] == "keep"
    assert client.post(f"{url}/stop").json() == {"stopped": True}
    assert client.get(url).json()["state"] == "stopped"
    assert client.post(f"{url}/stop").json() == {"stopped": False}


def test_sandbox_rest_bad_input_and_strangers(client: APIClient, session: Session) -> None:
    url = f"{API}/sessions/{session.uuid}/sandbox"
    stranger = APIClient()
    stranger.force_authenticate(get_user_model().objects.create_user("stranger", password="x"))
    for method, path in (("get", ""), ("post", "/exec"), ("post", "/start"), ("get", "/processes")):
        response = getattr(stranger, method)(f"{url}{path}", {"command": "id"}, format="json")
        assert response.status_code == 404, (path, response.content)
    assert not _running(session)  # nothing a stranger sent reached the sandbox

    bad = client.post(f"{url}/exec", {"command": "x", "argv": ["y"]}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input"
    bad = client.patch(url, {"idle_policy": "forever"}, format="json")
    assert bad.status_code == 400
    bad = client.post(f"{url}/exec", {"command": "ls", "cwd": "../.."}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_path"
    missing = client.post(f"{url}/processes/p999/kill", {}, format="json")
    assert missing.status_code == 404
    client.post(f"{url}/stop")


def test_background_processes_over_rest(client: APIClient, session: Session) -> None:
    url = f"{API}/sessions/{session.uuid}/sandbox/processes"
    created = client.post(
        url, {"command": "echo ready; read name; echo hello $name; sleep 600"}, format="json"
    )
    assert created.status_code == 201, created.json()
    pid = created.json()["process_id"]
    assert created.json()["running"] is True
    listed = client.get(url).json()
    assert [p["process_id"] for p in listed] == [pid]
    sent = client.post(f"{url}/{pid}/stdin", {"data": "world\n", "eof": True}, format="json")
    assert sent.status_code == 204
    deadline = time.monotonic() + 10
    while client.get(url).json()[0]["output_bytes"] < len("ready\nhello world\n"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.post(f"{url}/{pid}/kill", {"signal": "TERM"}, format="json").status_code == 204
    frames = sse(client.get(f"{url}/{pid}/output"))  # re-attach: all retained output, then exit
    text = "".join(d["data"] for name, d in frames if name == "stdout")
    assert text == "ready\nhello world\n"
    assert frames[-1] == ("exit", {**frames[-1][1], "exit_code": -15})
    assert client.get(url).json()[0]["running"] is False
    client.post(f"{API}/sessions/{session.uuid}/sandbox/stop")


def test_deleting_a_session_stops_its_sandbox(client: APIClient, session: Session) -> None:
    url = f"{API}/sessions/{session.uuid}/sandbox"
    assert (
        client.post(f"{url}/processes", {"command": "sleep 600"}, format="json").status_code == 201
    )
    assert _running(session)
    session_delete(session=session)
    assert not _running(session)


def _running(session: Session) -> bool:
    from asgiref.sync import async_to_sync

    return bool(async_to_sync(get_backend().is_running)(str(session.uuid)))


@pytest.fixture
def media(settings: Any, tmp_path: Any) -> Any:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def test_snapshot_and_restore_round_trip_the_workspace(
    client: APIClient, session: Session, media: Any
) -> None:
    url = f"{API}/sessions/{session.uuid}/sandbox"
    made = client.post(
        f"{url}/exec",
        {"command": "mkdir -p src && echo v1 > src/a.txt && ln -s src/a.txt link && "
                    "printf '#!/bin/sh\\necho run\\n' > run.sh && chmod +x run.sh"},
        format="json",
    )  # fmt: skip
    assert made.json()["exit_code"] == 0, made.json()
    created = client.post(f"{url}/snapshots")
    assert created.status_code == 201, created.json()
    name = created.json()["name"]
    assert created.json()["size"] > 0
    assert (media / "snapshots" / str(session.uuid) / f"{name}.tar.gz").is_file()

    changed = client.post(
        f"{url}/exec", {"command": "echo v2 > src/a.txt; rm link; touch extra"}, format="json"
    )
    assert changed.json()["exit_code"] == 0
    assert [s["name"] for s in client.get(f"{url}/snapshots").json()] == [name]

    restored = client.post(f"{url}/snapshots/{name}/restore")
    assert restored.status_code == 200, restored.json()
    assert restored.json() == {"files": 4}  # src, src/a.txt, link, run.sh
    assert client.get(url).json()["state"] == "stopped"  # restore stops the sandbox first
    after = client.post(
        f"{url}/exec", {"command": "cat link; ./run.sh; ls extra 2>&1; readlink link"},
        format="json",
    ).json()  # fmt: skip
    assert after["stdout"].splitlines() == [
        "v1", "run", "ls: cannot access 'extra': No such file or directory", "src/a.txt",
    ]  # fmt: skip
    client.post(f"{url}/stop")


def test_snapshot_errors_and_a_tampered_snapshot(
    client: APIClient, session: Session, media: Any, tmp_path: Any
) -> None:
    import io
    import tarfile

    url = f"{API}/sessions/{session.uuid}/sandbox/snapshots"
    bad = client.post(f"{url}/..%2F..%2Fetc/restore")
    assert bad.status_code in (400, 404)
    bad = client.post(f"{url}/not-a-snapshot/restore")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input"
    missing = client.post(f"{url}/20260101T000000Z-abcdef/restore")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    # A snapshot edited in storage to escape the workspace is refused before anything is written.
    folder = media / "snapshots" / str(session.uuid)
    folder.mkdir(parents=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member in ("ok.txt", "../../escaped.txt"):
            info = tarfile.TarInfo(member)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    (folder / "20260101T000000Z-abcdef.tar.gz").write_bytes(buf.getvalue())
    refused = client.post(f"{url}/20260101T000000Z-abcdef/restore")
    assert refused.status_code == 400, refused.json()
    assert refused.json()["error"]["details"]["member"] == "../../escaped.txt"
    root = session.workspace_path
    assert not (root.parent.parent / "escaped.txt").exists()
    assert not (root / "ok.txt").exists()

    stranger = APIClient()
    stranger.force_authenticate(get_user_model().objects.create_user("peeker", password="x"))
    assert stranger.get(url).status_code == 404
    assert stranger.post(url).status_code == 404
    assert not folder.joinpath("..").resolve().joinpath("x").exists()


def test_admin_lists_live_sandboxes_and_kills_them(owner: Any, session: Session) -> None:
    from django.test import Client
    from django.urls import reverse

    api = APIClient()
    api.force_authenticate(owner)
    url = f"{API}/sessions/{session.uuid}/sandbox/processes"
    assert api.post(url, {"command": "sleep 600"}, format="json").status_code == 201
    staff = Client()
    staff.force_login(
        get_user_model().objects.create_user("ops", password="x", is_staff=True, is_superuser=True)
    )
    changelist = reverse("admin:sandboxes_sandbox_changelist")
    page = staff.get(changelist).content.decode()
    assert 'field-live_state">running<' in page and "p1: /bin/sh -c sleep 600" in page
    row = Sandbox.objects.get(session=session)
    done = staff.post(
        changelist, {"action": "stop_sandboxes", "_selected_action": [row.pk]}, follow=True
    )
    assert "Stopped 1 running sandbox(es)." in done.content.decode()
    assert not _running(session)
    page = staff.get(changelist).content.decode()
    assert "p1: /bin/sh -c sleep 600" not in page

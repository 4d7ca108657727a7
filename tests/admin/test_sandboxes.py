"""Force-kill, the session page's sandbox panel and the sandbox list, on real bubblewrap
sandboxes and the real inline executor: a ``sleep 60`` task is force-killed from its admin
page (task cancelled, sandbox stopped), and a session's running sandbox shows its usage and
processes and is stopped from the session page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import AuditEntry
from sandboxes.models import Sandbox
from sandboxes.registry import get_backend
from sessions.executors import Executor
from sessions.models import Session
from tests import factories
from tests.admin.conftest import signed_in
from tests.helpers import stdout_of, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]


@pytest.fixture
async def executor(transactional_db: Any) -> AsyncIterator[Executor]:
    """A real executor on the test's event loop (as in the server process)."""
    ex = Executor(concurrency=2)
    await ex.start()
    yield ex
    await ex.stop()


def _running(session: Session) -> bool:
    return bool(async_to_sync(get_backend().is_running)(str(session.uuid)))


async def test_force_kill_cancels_the_running_task_and_stops_its_sandbox(
    executor: Executor, session: Session
) -> None:
    root = await sync_to_async(factories.make_user)("root", is_staff=True, is_superuser=True)
    task = await sync_to_async(factories.make_task)(
        session, input={"command": "echo started; sleep 60"}
    )
    executor.kick()
    for _ in range(600):  # until the command runs in its sandbox
        if await sync_to_async(stdout_of)(task) == "started\n":
            break
        await asyncio.sleep(0.1)
    assert await get_backend().is_running(str(session.uuid))

    client = await sync_to_async(signed_in)(root)
    url = reverse("admin:agent_sessions_task_tool", args=[task.pk, "kill"])
    answer = await sync_to_async(client.post)(url, HTTP_ACCEPT="application/json")

    assert answer.status_code == 200
    assert answer.json()["message"] == (f"Task {task.uuid} cancelled; its sandbox was stopped.")
    task = await wait_terminal(task, timeout=60)
    assert task.status == "cancelled"
    assert not await get_backend().is_running(str(session.uuid))
    entry = await AuditEntry.objects.aget(action="admin.sandbox_kill")
    assert entry.target_id == str(session.uuid)
    assert entry.details == {
        "task": str(task.uuid), "task_cancelled": True, "sandbox_was_running": True,
    }  # fmt: skip

    # On a finished task with a stopped sandbox, the button has nothing left to do.
    again = await sync_to_async(client.post)(url, HTTP_ACCEPT="application/json")
    assert again.json()["message"] == (
        f"Task {task.uuid} was not active; its sandbox was not running."
    )


def test_session_page_shows_files_and_the_live_sandbox_and_stops_it(
    user: Any, session: Session
) -> None:
    root = factories.make_user("root", is_staff=True, is_superuser=True)
    admin = signed_in(root)
    workspace = session.workspace_path
    (workspace / "notes").mkdir(parents=True)
    (workspace / "notes" / "readme.txt").write_text("x" * 1234)
    (workspace / "data.bin").write_bytes(b"\0" * 10)
    api = APIClient()
    api.force_authenticate(user)
    started = api.post(
        f"/api/v1/sessions/{session.uuid}/sandbox/processes",
        {"command": "sleep 600"},
        format="json",
    )
    assert started.status_code == 201, started.content

    url = reverse("admin:agent_sessions_session_change", args=[session.pk])
    page = admin.get(url).content.decode()
    files = page[page.index('id="workspace-files"') :]
    assert re.search(r"<code>notes/readme.txt</code>.*?data-bytes=\"1234\"", files, re.S)
    assert re.search(r"<code>data.bin</code>.*?data-bytes=\"10\"", files, re.S)
    assert "<code>notes</code></td><td>directory" in files
    assert 'id="sandbox-state" class="status status-running">running<' in page
    assert "sleep 600" in page
    assert re.search(r"<dt>Processes</dt><dd>\d+ \(limit", page), "pids are measured"

    # The sandbox list shows the same sandbox with its usage and disk use.
    listing = admin.get(reverse("admin:sandboxes_sandbox_changelist")).content.decode()
    assert 'field-live_state">running<' in listing
    assert re.search(r'field-pid_count">\d+<', listing)
    assert 'field-disk_mb">0.0<' in listing  # 1,244 bytes

    stop = re.search(r'<form method="post" action="([^"]+)" class="inline-action">', page)
    assert stop is not None
    done = admin.post(stop.group(1), follow=True).content.decode()
    assert "Sandbox stopped." in done
    assert not _running(session)
    assert 'id="sandbox-state" class="status status-stopped">stopped<' in done
    assert "The sandbox is not running." in done
    assert AuditEntry.objects.filter(
        action="admin.sandbox_stop", target_id=str(session.uuid), actor=root
    ).exists()
    again = admin.post(stop.group(1), HTTP_ACCEPT="application/json").json()
    assert again["message"] == "The sandbox was not running."


def test_sandbox_page_stop_button(user: Any, session: Session) -> None:
    admin = signed_in(factories.make_user("root", is_staff=True, is_superuser=True))
    api = APIClient()
    api.force_authenticate(user)
    url = f"/api/v1/sessions/{session.uuid}/sandbox/processes"
    assert api.post(url, {"command": "sleep 600"}, format="json").status_code == 201
    row = Sandbox.objects.get(session=session)

    page = admin.get(reverse("admin:sandboxes_sandbox_change", args=[row.pk])).content.decode()
    stop = reverse("admin:sandboxes_sandbox_stop", args=[row.pk])
    assert f'action="{stop}"' in page
    assert admin.get(stop).status_code == 405
    done = admin.post(stop, follow=True).content.decode()
    assert "Sandbox stopped." in done
    assert not _running(session)


def test_session_page_empty_workspace(session: Session) -> None:
    admin = signed_in(factories.make_user("root", is_staff=True, is_superuser=True))
    page = admin.get(reverse("admin:agent_sessions_session_change", args=[session.pk]))
    text = page.content.decode()
    assert "The workspace is empty." in text
    assert 'class="status status-stopped">stopped<' in text

"""The sandbox REST layer and services against the ``fake`` backend: what they do with a
backend's answers (isolation itself is tested on the real backends in ``tests/sandboxes``)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured

from sandboxes.backends.fake import FakeBackend
from sandboxes.models import Sandbox
from sandboxes.registry import get_backend, reset_backends
from sessions.services.sessions import session_delete
from tests.api.helpers import API

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake(settings: Any) -> Any:
    settings.SANDBOX_BACKEND = "fake"
    reset_backends()
    backend = get_backend()
    assert isinstance(backend, FakeBackend)
    yield backend
    reset_backends()


def test_exec_state_and_stop_go_through_the_backend(api_client, session, fake) -> None:
    fake.script(["/bin/sh", "-c", "make"], stdout=b"built\n", stderr=b"warning\n", exit_code=2)
    url = f"{API}/sessions/{session.uuid}/sandbox"

    result = api_client.post(f"{url}/exec", {"command": "make"}, format="json")

    assert result.status_code == 200, result.json()
    body = result.json()
    assert (body["stdout"], body["stderr"], body["exit_code"]) == ("built\n", "warning\n", 2)
    assert fake.calls[-1] == (str(session.uuid), ("/bin/sh", "-c", "make"))
    state = api_client.get(url).json()
    assert (state["state"], state["backend"], state["tier"]) == ("running", "fake", "fake")
    labels = {"session": str(session.uuid), "owner": str(session.owner_id)}
    assert [i.sandbox_id for i in async_to_sync(fake.list_sandboxes)(labels)] == [str(session.uuid)]
    assert Sandbox.objects.get(session=session).start_count == 1
    assert api_client.post(f"{url}/stop").json() == {"stopped": True}
    assert api_client.get(url).json()["state"] == "stopped"


def test_background_process_listing_and_kill(api_client, session, fake) -> None:
    url = f"{API}/sessions/{session.uuid}/sandbox/processes"
    started = api_client.post(url, {"argv": ["npm", "run", "dev"]}, format="json")
    assert started.status_code == 201, started.json()
    pid = started.json()["process_id"]
    assert [p["argv"] for p in api_client.get(url).json()] == [["npm", "run", "dev"]]
    assert (
        api_client.post(f"{url}/{pid}/kill", {"signal": "TERM"}, format="json").status_code == 204
    )
    assert api_client.get(url).json()[0]["exit_code"] == -15
    missing = api_client.post(f"{url}/p404/stdin", {"data": "x"}, format="json")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "process_not_found"


def test_deleting_the_session_stops_its_sandbox(api_client, session, fake) -> None:
    api_client.post(f"{API}/sessions/{session.uuid}/sandbox/start")
    assert str(session.uuid) in fake.sandboxes
    session_delete(session=session)
    assert str(session.uuid) not in fake.sandboxes


def test_the_fake_backend_refuses_to_run_outside_tests(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "pytest")
    with pytest.raises(ImproperlyConfigured, match="unit tests only"):
        FakeBackend()

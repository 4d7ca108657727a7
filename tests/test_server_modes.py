"""SERVER_MODE decides what a process serves; ``*_ENABLED`` flags switch single integrations off;
/health says which; links between modules still resolve."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse

from tests import factories


@pytest.fixture
def bearer(user: Any) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {factories.make_token(user)}"}


def _get(path: str, bearer: dict[str, str]) -> Any:
    return Client().get(path, **bearer)


@pytest.mark.django_db
def test_all_serves_every_module(settings: Any, bearer: dict[str, str]) -> None:
    settings.SERVER_MODE = "all"
    assert _get("/api/v1/sessions", bearer).status_code == 200
    assert _get("/api/v1/agents", bearer).status_code == 200
    health = Client().get("/health").json()["server"]
    assert health["server_mode"] == "all"
    assert health["modules"] == ["core", "agent", "runtime", "debugger", "embodiment"]
    assert all(health["features"].values())


@pytest.mark.django_db
def test_embodiment_mode_answers_404_for_the_agent_api_but_keeps_accounts(
    settings: Any, bearer: dict[str, str]
) -> None:
    settings.SERVER_MODE = "embodiment"

    refused = _get("/api/v1/sessions", bearer)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"
    assert _get("/api/v1/teams", bearer).status_code == 200  # core: accounts
    assert _get("/api/v1/api-keys", bearer).status_code == 200
    health = Client().get("/health").json()["server"]
    assert health["modules"] == ["core", "embodiment"]
    assert health["features"]["sessions"] is False
    assert health["features"]["openai"] is True
    # A link into a module served elsewhere still resolves.
    assert reverse("sessions_api:task-detail", kwargs={"task_id": "x"}).startswith("/api/v1/")


@pytest.mark.django_db
def test_the_schema_lists_only_served_operations(settings: Any) -> None:
    settings.SERVER_MODE = "agent"
    paths = Client().get("/api/schema/?format=json").json()["paths"]
    assert "/api/v1/sessions" in paths
    assert not any(p.startswith("/api/v1/tasks/{task_id}/steps") for p in paths)

    settings.SERVER_MODE = "debugger"
    paths = Client().get("/api/schema/?format=json").json()["paths"]
    assert "/api/v1/sessions" not in paths
    assert any(p.startswith("/api/v1/tasks/{task_id}/steps") for p in paths)


@pytest.mark.django_db
def test_an_integration_flag_switches_off_only_that_integration(
    settings: Any, bearer: dict[str, str]
) -> None:
    settings.WEBHOOKS_ENABLED = False
    health = Client().get("/health").json()["server"]
    assert health["features"]["webhooks"] is False
    assert health["features"]["openai"] is True
    assert _get("/api/v1/sessions", bearer).status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_websocket_streams_close_with_4404_outside_their_mode(
    settings: Any, user: Any, session: Any
) -> None:
    from runtime_project.asgi import application

    settings.SERVER_MODE = "runtime"
    token = await _token(user)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/sessions/{session.uuid}/",
        headers=[(b"authorization", f"Bearer {token}".encode())],
    )
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4404
    await communicator.disconnect()


async def _token(user: Any) -> str:
    from asgiref.sync import sync_to_async

    return await sync_to_async(factories.make_token)(user)


@pytest.mark.transport
def test_admin_port_serves_the_admin_only_there(transactional_db: Any, tmp_path: Any) -> None:
    """daphne listens on the API port and ADMIN_PORT (as `make serve` does): the admin answers
    only on its port, which serves nothing else but /health and static files."""
    import subprocess

    import httpx

    from tests import procs

    api_port, admin_port = procs.free_port(), procs.free_port()
    argv = procs.daphne_argv(api_port)
    argv[-1:-1] = ["-e", f"tcp:port={admin_port}:interface=127.0.0.1"]
    log = tmp_path / "daphne.log"
    proc = subprocess.Popen(
        argv,
        cwd=procs.ROOT,
        env=procs.child_env(ADMIN_PORT=admin_port),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        procs.wait_for_port(api_port, proc)
        procs.wait_for_port(admin_port, proc)
        api, admin = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{admin_port}"

        assert httpx.get(f"{admin}/admin/login/").status_code == 200
        assert httpx.get(f"{admin}/health").json()["server"]["admin_port"] == admin_port
        assert httpx.get(f"{admin}/static/admin/css/base.css").status_code == 200
        refused = httpx.get(f"{admin}/api/v1/agents")
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "not_found"
        assert httpx.post(f"{admin}/mcp", json={}).status_code == 404

        assert httpx.get(f"{api}/admin/login/").status_code == 404
        assert httpx.get(f"{api}/api/v1/agents").status_code == 401  # served (needs a key)
    finally:
        procs.stop(proc)

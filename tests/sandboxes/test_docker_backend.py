"""The ``docker`` backend against a real engine (Podman's Docker-compatible API, see
``tests/sandboxes/podman.py``): container hardening, reuse, background processes, idle stop,
orphan cleanup and labels. The escape cases run on it in ``test_escape.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from sandboxes.backends.docker import LABEL, DockerBackend, _key
from sandboxes.base import Limits, SandboxSpec
from tests.sandboxes.conftest import docker_settings
from tests.sandboxes.helpers import collect

pytestmark = [pytest.mark.sandbox, pytest.mark.docker]


def spec_for(workspace: Path, sandbox_id: str = "dk", **kwargs: Any) -> SandboxSpec:
    limits = Limits(**kwargs.pop("limits", {}))
    return SandboxSpec(sandbox_id=sandbox_id, workspace=workspace, limits=limits, **kwargs)


def container_of(backend: DockerBackend, sandbox_id: str) -> Any:
    (container,) = backend._containers({f"{LABEL}.key": _key(sandbox_id)})
    return container


async def test_a_sandbox_is_one_hardened_container_reused_by_every_exec(
    docker_backend: DockerBackend, workspace: Path
) -> None:
    spec = spec_for(workspace, limits={"memory_mb": 256, "pids": 64}, labels={"session": "s1"})
    out, err, exit_event = await collect(
        await docker_backend.exec(spec, ["sh", "-c", "id -u; echo $HOME; pwd; echo hi > f"])
    )
    assert exit_event.exit_code == 0, err
    uid, home, cwd = out.decode().split()
    assert int(uid) != 0 and (home, cwd) == ("/workspace", "/workspace")
    assert (workspace / "f").read_text() == "hi\n"  # the workspace is the host directory
    first = container_of(docker_backend, "dk")
    for _ in range(3):
        await collect(await docker_backend.exec(spec, ["true"]))
    assert container_of(docker_backend, "dk").id == first.id  # reused, not one per exec

    host = first.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["NetworkMode"] in ("none", "")
    assert "no-new-privileges" in " ".join(host["SecurityOpt"] or [])
    assert {c.upper().removeprefix("CAP_") for c in host["CapDrop"]} >= {"ALL"} or len(
        host["CapDrop"]
    ) > 10
    assert host["Memory"] == 256 * 1024 * 1024 and host["PidsLimit"] == 64
    assert first.labels[f"{LABEL}.label.session"] == "s1"
    listed = await docker_backend.list_sandboxes({"session": "s1"})
    assert [i.sandbox_id for i in listed] == ["dk"]
    assert await docker_backend.list_sandboxes({"session": "other"}) == []
    assert await docker_backend.stop("dk") is True
    assert docker_backend._containers({f"{LABEL}.key": _key("dk")}) == []


async def test_memory_limit_timeout_and_output(
    docker_backend: DockerBackend, workspace: Path
) -> None:
    spec = spec_for(workspace, "dk-limits", limits={"memory_mb": 128, "wall_timeout_s": 1})
    hog = ["python3", "-c", "b = bytearray(400 * 1024 * 1024)"]
    _, _, memory = await collect(await docker_backend.exec(spec, hog))
    assert memory.limit == "memory" and memory.exit_code == -9
    started = time.monotonic()
    _, _, slow = await collect(await docker_backend.exec(spec, ["sleep", "30"]))
    assert slow.timed_out and time.monotonic() - started < 10
    out, _, _ = await collect(
        await docker_backend.exec(spec, ["head", "-c", "300000", "/dev/zero"])
    )
    assert len(out) == 300000
    await docker_backend.stop("dk-limits")


async def test_background_processes_attach_stdin_and_kill(
    docker_backend: DockerBackend, workspace: Path
) -> None:
    spec = spec_for(workspace, "dk-bg")
    process = await docker_backend.start_process(
        spec, ["sh", "-c", "echo ready; read name; echo hello $name; sleep 600"]
    )
    await docker_backend.write_stdin("dk-bg", process.process_id, b"podman\n", eof=True)
    deadline = time.monotonic() + 10
    while (await docker_backend.processes("dk-bg"))[0].output_bytes < len("ready\nhello podman\n"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await docker_backend.kill_process("dk-bg", process.process_id, signal=15)
    text = b""
    async for event in await docker_backend.attach("dk-bg", process.process_id):
        if event.stream == "exit":
            assert event.exit_code == -15
        else:
            text += event.data
    assert text == b"ready\nhello podman\n"
    await docker_backend.stop("dk-bg")


async def test_idle_sandboxes_stop_and_orphans_are_removed(
    docker_backend: DockerBackend, workspace: Path, podman_url: str
) -> None:
    idle = dataclasses.replace(spec_for(workspace, "dk-idle"), idle_timeout_s=1.0)
    await collect(await docker_backend.exec(idle, ["true"]))
    deadline = time.monotonic() + 15
    while await docker_backend.is_running("dk-idle"):
        assert time.monotonic() < deadline, "the idle sandbox did not stop"
        await asyncio.sleep(0.2)
    assert "dk-idle" in await docker_backend.reap_idle()
    assert docker_backend._containers({f"{LABEL}.key": _key("dk-idle")}) == []

    # A container left by a previous server (its supervisor gone) is removed on start-up.
    await collect(await docker_backend.exec(spec_for(workspace, "dk-orphan"), ["true"]))
    container_of(docker_backend, "dk-orphan").exec_run(["sh", "-c", "kill -9 -1"])
    with docker_settings(podman_url):
        fresh = DockerBackend()
        assert fresh.capabilities().available
    assert fresh._containers({f"{LABEL}.key": _key("dk-orphan")}) == []


async def test_an_image_without_python_is_a_clear_error(
    docker_backend: DockerBackend, workspace: Path
) -> None:
    from sandboxes.base import SandboxError

    spec = dataclasses.replace(spec_for(workspace, "dk-noimg"), image="localhost/missing:1")
    with pytest.raises(SandboxError) as caught:
        await docker_backend.exec(spec, ["true"])
    assert caught.value.details["image"] == "localhost/missing:1"


@pytest.mark.django_db
def test_a_sessions_sandbox_runs_in_a_container_through_the_api(
    podman_url: str, settings: Any
) -> None:
    from asgiref.sync import async_to_sync
    from rest_framework.test import APIClient

    from sandboxes.registry import get_backend, reset_backends
    from tests import factories

    user = factories.make_user("docker-user")
    session = factories.make_session(user, factories.make_agent(user, slug="dk", name="dk"))
    api = APIClient()
    api.force_authenticate(user)
    url = f"/api/v1/sessions/{session.uuid}/sandbox"
    settings.SANDBOX_BACKEND = "docker"
    with docker_settings(podman_url):
        reset_backends()
        try:
            result = api.post(f"{url}/exec", {"command": "cat /proc/1/cmdline | tr '\\0' ' '"},
                              format="json")  # fmt: skip
            assert result.status_code == 200, result.json()
            assert result.json()["stdout"].startswith("/run/podman-init -- python3")  # its init
            state = api.get(url).json()
            assert (state["state"], state["backend"], state["tier"]) == (
                "running",
                "docker",
                "docker",
            )
            assert api.post(f"{url}/stop").json() == {"stopped": True}
            assert not async_to_sync(get_backend().is_running)(str(session.uuid))
        finally:
            async_to_sync(get_backend().stop)(str(session.uuid))
            reset_backends()

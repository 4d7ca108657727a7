"""Remote runtimes against a live daphne: one server for the package (``live_daphne`` of the
transport tests; starting one per test cost ~10 s each under load) over the transactional test
database, an async REST helper, a steerable executor and a context manager that keeps a
``RuntimeClient`` running."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from runtime_client.client import RuntimeClient
from tests import factories
from tests.transport.conftest import DaphneServer, live_daphne

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


class Api:
    """The REST calls the tests make, as ``api_user`` (async: the runtime client shares the
    test's event loop, which a blocking call would stall)."""

    def __init__(self, server: DaphneServer, token: str, client: httpx.AsyncClient) -> None:
        self.server, self.token, self.client = server, token, client
        self.sessions: list[str] = []

    async def settled(self, timeout: float = 20) -> None:
        """Wait until no runtime is attached to the test's sessions and none of their tasks is
        active: the server has written everything the test caused, so flushing the database
        after it cannot race (and deadlock with) a detach still being recorded."""
        deadline = time.monotonic() + timeout
        for session_id in self.sessions:
            while True:
                runtime = await self.client.get(f"/api/v1/sessions/{session_id}/runtime")
                active = await self.client.get(
                    f"/api/v1/sessions/{session_id}/tasks?status=queued,running,waiting"
                )
                if runtime.status_code == 404 and active.json()["count"] == 0:
                    break
                assert time.monotonic() < deadline, f"session {session_id} still busy"
                await asyncio.sleep(0.1)

    async def agent(self, **spec: Any) -> str:
        slug = f"remote-{time.monotonic_ns()}"
        response = await self.client.post(
            "/api/v1/agents", json={"slug": slug, "name": slug, "kind": "remote", "spec": spec}
        )
        assert response.status_code == 201, response.text
        return slug

    async def session(self, **spec: Any) -> str:
        response = await self.client.post(
            "/api/v1/sessions", json={"agent": await self.agent(**spec)}
        )
        assert response.status_code == 201, response.text
        self.sessions.append(str(response.json()["id"]))
        return self.sessions[-1]

    async def task(self, session_id: str, **task_input: Any) -> str:
        response = await self.client.post(
            f"/api/v1/sessions/{session_id}/tasks", json={"input": task_input}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def get_task(self, task_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def finished(self, task_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = await self.get_task(task_id)
            if task["status"] in TERMINAL:
                return task
            assert time.monotonic() < deadline, f"task still {task['status']}"
            await asyncio.sleep(0.15)

    async def task_events(self, task_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/v1/tasks/{task_id}/events?limit=1000")
        assert response.status_code == 200, response.text
        return list(response.json()["events"])

    async def session_events(self, session_id: str, prefix: str = "") -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/v1/sessions/{session_id}/events?limit=1000")
        assert response.status_code == 200, response.text
        return [e for e in response.json()["events"] if e["type"].startswith(prefix)]

    def client_for(self, session_id: str, executor: Any, **options: Any) -> RuntimeClient:
        options.setdefault("runtime_id", f"rt-{time.monotonic_ns()}")
        options.setdefault("backoff_initial_s", 0.1)
        return RuntimeClient(
            self.server.ws_url, options.pop("token", self.token), session_id,
            executor=executor, **options,
        )  # fmt: skip


@dataclass
class People:
    token: str  # alice's key (all scopes); alice owns the sessions the tests make
    outsiders: dict[str, str]  # keys that may not attach to alice's sessions


@pytest.fixture(scope="package")
def server(
    django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaphneServer]:
    with live_daphne(
        tmp_path_factory.mktemp("remote"),
        TASK_CANCEL_GRACE_S=2,
        TASK_DRAIN_S=1,
        # Nothing in the background writes between tests (the flush after each one would
        # deadlock with it on PostgreSQL): no scheduler pass, no lease sweep.
        SCHEDULER_INTERVAL_S=3600,
        TASK_LEASE_S=3600,
        THROTTLE_USER="100000/min",  # the tests poll task status
        THROTTLE_TEAM="100000/min",
    ) as daphne:
        yield daphne


@pytest.fixture
def people(transactional_db: Any) -> People:
    """Committed (the server reads them), flushed after the test like any transactional test."""
    alice = factories.make_user("alice")
    stranger, viewer = factories.make_user("mallory"), factories.make_user("vic")
    factories.add_member(factories.team_of(alice), viewer, "viewer")
    return People(
        token=factories.make_token(alice),
        outsiders={
            "stranger": factories.make_token(stranger),
            "viewer": factories.make_token(viewer),
            "read_only": factories.make_token(alice, scopes=["sessions:read"]),  # no tasks:write
        },
    )


@pytest.fixture
async def api(server: DaphneServer, people: People) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {people.token}"}, timeout=30
    ) as client:
        api = Api(server, people.token, client)
        yield api
        await api.settled()


@pytest.fixture
def outsiders(people: People) -> dict[str, str]:
    return people.outsiders


class Script:
    """An executor the tests steer through the task input's ``mode``: ``ok`` (default) emits
    two lines and succeeds, ``fail`` fails with the error ``boom``, ``hold`` waits for
    :attr:`release` (or a cancel) before finishing like ``ok``."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.saw_cancel = asyncio.Event()

    async def __call__(
        self, task: dict[str, Any], emit: Any, cancel: asyncio.Event
    ) -> dict[str, Any]:
        self.calls.append(task)
        mode = task["input"].get("mode", "ok")
        emit("process.stdout", {"process_id": "p1", "text": "hello\n"})
        self.started.set()
        if mode == "fail":
            return {"status": "failed", "result": None, "usage": {},
                    "error": {"code": "boom", "message": "it broke", "details": {"line": 3}}}  # fmt: skip
        if mode == "hold":
            waits = [asyncio.ensure_future(self.release.wait()),
                     asyncio.ensure_future(cancel.wait())]  # fmt: skip
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
            if cancel.is_set():
                self.saw_cancel.set()
                return {"status": "failed", "result": None, "usage": {},
                        "error": {"code": "cancelled", "message": "stopped", "details": {}}}  # fmt: skip
        emit("process.stdout", {"process_id": "p1", "text": "bye\n"})
        return {"status": "succeeded", "result": {"answer": 42}, "error": None,
                "usage": {"cells": 1}}  # fmt: skip


@contextlib.asynccontextmanager
async def running(client: RuntimeClient) -> AsyncIterator[asyncio.Task[str]]:
    """``client.run()`` in the background, registered; stopped on exit."""
    job = asyncio.ensure_future(client.run())
    registered = asyncio.ensure_future(client.registered.wait())
    try:
        await asyncio.wait({job, registered}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if job.done():
            job.result()  # raises what stopped it
        assert registered.done(), "the runtime did not register"
        yield job
    finally:
        registered.cancel()
        if not job.done():
            await client.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(job, 15)


async def wait_for(event: asyncio.Event, timeout: float = 15) -> None:
    await asyncio.wait_for(event.wait(), timeout)

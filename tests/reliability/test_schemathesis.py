"""Schemathesis against the live OpenAPI schema of a real daphne, as an authenticated owner.

Every operation the server documents at ``/api/schema/`` is fuzzed with schema-valid requests
(Hypothesis: derandomized, no shrinking, no example database, :data:`EXAMPLES` requests each)
over one server whose database holds one of each object, so the ``{id}`` routes reach real rows
(three draws in four) as well as unknown ids. Every response must not be a 5xx, must have a
documented status code and content type and match its documented body schema, and every
4xx/5xx must carry the error envelope ``{"error": {"code", "message", "details"}}``. All
operations run; the failures of all of them are reported together, with the server's errors.

Nothing is excluded:

* operations that change or remove the seeded objects run last (:data:`LATE`, then the deletes,
  deepest path first, the team's last), so they do not turn the other operations into 404s;
* the SSE responses (:data:`STREAMS`) are read for at most :data:`STREAM_READ_S` seconds
  (session streams never end by design): schemathesis cuts them and validates the events read;
* generated webhook and OAuth URLs are never contacted (the webhook dispatcher is off; the
  sandbox has no network).

:data:`PINNED` requests run before the generated ones: the cases that found bugs here, so they
stay covered whatever Hypothesis draws. Stateful (link-following) testing is off: it multiplies
the requests, and the ordering above already chains the seeded objects through every operation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests import factories
from tests.transport.conftest import live_daphne

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]

EXAMPLES = 5  # generated requests per operation
STREAM_EXAMPLES = 2
STREAM_READ_S = 1.0  # schemathesis reads an SSE response for at most this long
REQUEST_TIMEOUT_S = 30.0
REPORT_CHARS = 1500
# SSE responses: the session streams never end; a process's output not before it exits.
STREAMS = {
    "sessions_events_stream",
    "tasks_stream",
    "shared_events_stream",
    "sandbox_process_output",
}
# Run after every other operation: they stop, kill, cancel or roll back seeded objects.
LATE = {"sandbox_process_kill", "sandbox_snapshot_restore", "sandbox_stop", "sessions_cancel"}
# Reads that never succeed here, with the reason; every other GET must answer 2xx/3xx at least
# once, or the seeding is broken and the test would only be exercising 404s.
NEVER_OK = {
    "GET /api/v1/sessions/{session_id}/runtime": "no external runtime is attached (tests/remote)",
}
# Requests that found bugs (operationId → Case arguments), run first with the seeded objects.
PINNED: dict[str, list[dict[str, Any]]] = {
    "tasks_steps_list": [{"query": {"flat": "true"}}],  # StepNode.children was required
    "sandbox_process_stdin": [
        # A multipart body with no parts: daphne (Twisted) answered a bare 400 with no body.
        {"body": {}, "media_type": "multipart/form-data"},
        # A write after eof was a 500 (sbxd's stdin_closed).
        {"body": {"data": "x\n", "eof": True}, "media_type": "application/json"},
        {"body": {"data": "x\n"}, "media_type": "application/json"},
    ],
    "sandbox_exec": [  # the SSE answer was undocumented
        {"body": {"command": "echo hi", "stream": True}, "media_type": "application/json"}
    ],
    "agents_create": [  # an unknown team is a 404, undocumented
        {
            "body": {"slug": "pinned", "name": "P", "kind": "command", "team": "no-such-team"},
            "media_type": "application/json",
        }
    ],
}
SERVER_ENV = {
    "STREAM_HEARTBEAT_S": 1,
    "THROTTLE_USER": "1000000/m",  # ~1000 requests a minute from one user is the point here
    "THROTTLE_TEAM": "1000000/m",
    "WEBHOOK_DISPATCHER_ENABLED": "false",  # no outbound sends to generated webhook URLs
}


def error_shape(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is JSON ``{"error": {"code": str, "message": str, "details": {...}}}``."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    ok = (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("details"), dict)
    )
    assert ok, f"{response.status_code} without the error envelope: {response.content[:300]!r}"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_shape,
]


class World:
    """One team ``lab`` (owner alice, member bob) and one of each object the routes name."""

    def __init__(self) -> None:
        from accounts.models import ApiKey
        from accounts.services import team_create

        self.owner = factories.make_user("alice")
        self.member = factories.make_user("bob")
        self.team = team_create(user=self.owner, name="Lab", slug="lab")
        factories.add_member(self.team, self.member, "member")
        self.agent = factories.make_agent(self.owner, team=self.team, slug="echo")
        self.session = factories.make_session(self.owner, agent=self.agent, team=self.team)
        self.task = factories.finish_task(factories.make_task(self.session), result={"ok": 1})
        self.token = factories.make_token(self.owner)
        spare = factories.make_token(self.owner)  # the one DELETE /api-keys/{key_id} revokes
        self.snapshot_name = ""
        self.params: dict[str, str] = {
            "session_id": str(self.session.uuid),
            "task_id": str(self.task.uuid),
            "agent_id": str(self.agent.uuid),
            "team_id": str(self.team.uuid),  # not the slug: PATCH /teams/{id} may change it
            "username": "bob",
            "key_id": str(ApiKey.objects.get(prefix=spare.split(".")[0]).uuid),
            "file_path": "notes.txt",
            "name": "API_TOKEN",
            "action": "continue",
        }
        self.params |= self._objects()

    def _objects(self) -> dict[str, str]:
        from debugger.models import Breakpoint
        from debugger.monitors import monitor_create
        from integrations.alexa.services import alexa_skill_create
        from integrations.connections.oauth import TokenSet
        from integrations.connections.services import connection_store, provider_create
        from integrations.webhooks.services import endpoint_create, ping_create
        from providers.services import credential_create
        from schedules.services import schedule_create
        from sessions.services.artifacts import artifact_create
        from sessions.services.sharing import share_link_create

        owner, team, agent = self.owner, self.team, self.agent
        link, share_token = share_link_create(session=self.session, user=owner)
        artifact = artifact_create(
            session=self.session, name="out.txt", content=b"hi\n", content_type="text/plain"
        )
        credential = credential_create(
            owner=owner, team=team, name="openai", provider="openai", secret="sk-x1"
        )
        schedule = schedule_create(
            owner=owner, team=team, agent=agent, name="nightly", cron="0 3 * * *"
        )
        skill = alexa_skill_create(
            owner=owner, team=team, agent=agent, name="Echo",
            application_id="amzn1.ask.skill.00000000-0000-0000-0000-000000000000",
        )  # fmt: skip
        # A public address (example.com's) passes the outbound check; never contacted.
        webhook, _ = endpoint_create(
            team=team, user=owner, url="https://93.184.215.14/hooks", event_types=["task.succeeded"]
        )
        provider = provider_create(
            user=owner, team=team, name="github", client_id="id",
            authorize_url="https://93.184.215.14/authorize", token_url="https://93.184.215.14/token",
        )  # fmt: skip
        connection = connection_store(
            provider=provider, user=owner, tokens=TokenSet(access_token="t0k3n")
        )
        self.session.workspace_path.mkdir(parents=True, exist_ok=True)
        (self.session.workspace_path / "notes.txt").write_text("hello\n")
        return {
            "token": share_token,
            "share_id": str(link.uuid),
            "artifact_id": str(artifact.uuid),
            "credential_id": str(credential.uuid),
            "schedule_id": str(schedule.uuid),
            "skill_id": str(skill.uuid),
            "webhook_id": str(webhook.uuid),
            "delivery_id": str(ping_create(endpoint=webhook, due_in_s=3600).uuid),
            "provider_id": str(provider.uuid),
            "connection_id": str(connection.uuid),
            "breakpoint_id": str(
                Breakpoint.objects.create(task=self.task, created_by=owner, name="x").uuid
            ),
            "agent_breakpoint_id": str(
                Breakpoint.objects.create(agent=agent, created_by=owner, name="x").uuid
            ),
            "monitor_id": str(monitor_create(owner=owner, name="console").uuid),
        }

    def seed_over_http(self, client: httpx.Client) -> None:
        """Objects that live in the server process: secrets, a sandbox process, a snapshot."""
        base = f"/api/v1/sessions/{self.session.uuid}"
        for url in (f"{base}/secrets/API_TOKEN", "/api/v1/teams/lab/secrets/API_TOKEN"):
            answer = client.put(url, json={"value": "s3cret"})
            assert answer.status_code < 300, answer.text
        # Prints at once (so its output stream has something), then outlives the run.
        argv = ["sh", "-c", "echo started; sleep 300"]
        started = client.post(f"{base}/sandbox/processes", json={"argv": argv})
        assert started.status_code == 201, started.text
        self.params["process_id"] = started.json()["process_id"]
        snapshot = client.post(f"{base}/sandbox/snapshots")
        assert snapshot.status_code == 201, snapshot.text
        self.snapshot_name = snapshot.json()["name"]

    def path_parameters(self, operation: Any) -> dict[str, str]:
        params = dict(self.params)
        if "/snapshots/" in operation.path:
            params["name"] = self.snapshot_name
        return {p.name: params[p.name] for p in operation.path_parameters if p.name in params}


class Run:
    """Fuzzes operations against one server and keeps what came back."""

    def __init__(self, world: World, base_url: str) -> None:
        self.world = world
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {world.token}"}
        self.failures: list[str] = []
        self.statuses: dict[str, set[int]] = {}
        self.seconds: dict[str, float] = {}
        self.requests = 0

    def operation(self, operation: Any) -> None:
        """Pinned cases, then generated ones; keeps the first failing request's report."""
        started = time.monotonic()
        op_id = operation.definition.raw.get("operationId", "")
        timeout = STREAM_READ_S if op_id in STREAMS else REQUEST_TIMEOUT_S
        fixed = self.world.path_parameters(operation)
        failures: list[str] = []
        for kwargs in PINNED.get(op_id, []):
            self._send(operation.Case(path_parameters=fixed, **kwargs), timeout, failures)
        strategy = operation.as_strategy()
        if fixed:  # mostly the seeded objects; one draw in four names whatever ids it generates
            seeded = operation.as_strategy(path_parameters=fixed)
            strategy = st.integers(0, 3).flatmap(lambda n: seeded if n else strategy)

        @settings(
            max_examples=STREAM_EXAMPLES if op_id in STREAMS else EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            if not failures:
                self._send(case, timeout, failures)

        fuzz()
        self.failures += failures[:1]
        self.seconds[operation.label] = time.monotonic() - started

    def _send(self, case: Any, timeout: float, failures: list[str]) -> None:
        self.requests += 1
        try:
            response = case.call(base_url=self.base_url, headers=self.headers, timeout=timeout)
            self.statuses.setdefault(case.operation.label, set()).add(response.status_code)
            case.validate_response(response, checks=CHECKS, headers=self.headers)
        except FailureGroup as group:
            failures.append(_report(case, group.exceptions))
        except Exception as exc:  # a transport error (timeout, reset) is a failure too
            failures.append(f"{case.operation.label}: {type(exc).__name__}: {exc}"[:REPORT_CHARS])

    def never_ok(self, method: str) -> list[str]:
        """``method`` operations that never answered below 400 (and are not in NEVER_OK)."""
        return sorted(
            f"{label} {sorted(codes)}"
            for label, codes in self.statuses.items()
            if label.startswith(method + " ")
            and label not in NEVER_OK
            and not any(code < 400 for code in codes)
        )

    def summary(self) -> str:
        slowest = sorted(self.seconds.items(), key=lambda item: -item[1])[:5]
        return f"{len(self.seconds)} operations, {self.requests} requests in " + (
            f"{sum(self.seconds.values()):.1f}s; slowest: "
            + ", ".join(f"{label} {s:.1f}s" for label, s in slowest)
        )


def _report(case: Any, failures: Sequence[Failure]) -> str:
    """One failing request: what was wrong (shortened) and how to send it again."""
    lines = [f"{case.operation.label}:"]
    for failure in failures:
        lines.append(f"  {failure.code} {failure.title}: {failure.message[:REPORT_CHARS]}")
    lines.append("  " + case.as_curl_command(headers={"Authorization": "Bearer <token>"}))
    return "\n".join(lines)


def _server_errors(log: str, limit: int = 6000) -> str:
    """The server log's ``ERROR`` records with their tracebacks (the last ``limit``
    characters), leaving out tasks whose runner refused their generated input."""
    blocks: list[str] = []
    for line in log.splitlines():
        if " ERROR " in line:
            blocks.append(line)
        elif blocks and not line[:4].isdigit():  # a traceback line, not a new record
            blocks[-1] += "\n" + line
    useful = [b for b in blocks if "runner of task" not in b.split("\n", 1)[0]]
    return "\n".join(useful)[-limit:]


def _order(operation: Any) -> tuple[int, int, str]:
    """Reads and writes first, then :data:`LATE`, then deletes (deepest path first), then the
    team's (which takes every object of the team with it)."""
    op_id = operation.definition.raw.get("operationId", "")
    if op_id == "teams_destroy":
        return (3, 0, operation.label)
    if operation.method.upper() == "DELETE":
        return (2, -operation.path.count("/"), operation.label)
    return (1 if op_id in LATE else 0, 0, operation.label)


def test_every_operation_conforms_to_the_live_schema(transactional_db: Any, tmp_path: Path):
    world = World()
    with live_daphne(tmp_path, **SERVER_ENV) as server:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {world.token}"}, timeout=60
        ) as client:
            world.seed_over_http(client)
        schema = schemathesis.openapi.from_url(f"{server.url}/api/schema/?format=json")
        results = list(schema.get_all_operations())
        unusable = [str(result.err()) for result in results if isinstance(result, Err)]
        assert not unusable, f"operations schemathesis cannot use: {unusable}"
        operations = sorted((r.ok() for r in results if isinstance(r, Ok)), key=_order)
        assert len(operations) > 100, "the live schema lost its operations"
        run = Run(world, server.url)
        for operation in operations:
            run.operation(operation)
        print(run.summary())
        errors = _server_errors(server.read_log())
    assert not run.failures, "\n\n".join(run.failures) + "\n\nserver errors:\n" + errors
    # The seeded objects were reached: every read answered 2xx/3xx, every delete succeeded.
    assert not run.never_ok("GET"), f"reads that only failed: {run.never_ok('GET')}"
    assert not run.never_ok("DELETE"), f"deletes that only failed: {run.never_ok('DELETE')}"

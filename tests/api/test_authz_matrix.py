"""The authorisation matrix: every HTTP endpoint and WebSocket route, called by every persona,
answers exactly the status recorded in ``tests/api/authz_matrix.py``.

The endpoints are read from the URL conf and the WebSocket routing, so a new endpoint without
a row fails :func:`test_every_route_has_a_row`. Personas: ``anonymous``, ``expired`` and
``revoked`` keys, ``wrong_scope`` (the owner's key with a scope that does not cover the
endpoint), ``share_link`` (a share token as a bearer credential, and the valid token on the
``/shared/`` routes where everyone else gets a revoked one), ``stranger``, ``viewer``,
``member`` and ``owner`` of the team that owns everything.

Write requests carry an empty JSON body: the matrix is about who gets through, not about
features, so an authorised caller typically gets 400 (or the operation's success status when it
needs no input). Each call runs in a rolled-back savepoint over a fresh workspace file, so one
persona's delete does not change the next persona's answer.

``MATRIX_PRINT=1`` prints the observed table instead of asserting it (to review new rows).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey, Scope
from tests import factories
from tests.api.authz_matrix import EXPECTED, PERSONAS, SKIPPED, WS_EXPECTED

pytestmark = pytest.mark.django_db(transaction=False)

# Function views (no DRF class to read the methods from).
FUNCTION_VIEW_METHODS = {
    "health": ["GET"],
    "oneshot_view": ["POST"],
    "session_event_stream": ["GET"],
    "task_event_stream": ["GET"],
    "shared_event_stream": ["GET"],
    "models_list": ["GET"],
    "models_detail": ["GET"],
    "chat_completions": ["POST"],
    "responses_create": ["POST"],
    "unknown_route": ["GET"],
    "logo": ["GET"],
    "alexa_endpoint": ["POST"],
    "connect": ["GET"],
    "callback": ["GET"],
    "metrics": ["GET"],
    "home": ["GET"],
}


def _walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    routes: list[tuple[str, Any]] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            routes += _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            routes.append(("/" + prefix + str(pattern.pattern), pattern.callback))
    return routes


def _methods(callback: Any) -> list[str]:
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    operations = getattr(cls, "operation_views", None)
    if operations:
        return sorted(operations)
    name = getattr(callback, "__name__", "")
    if name in FUNCTION_VIEW_METHODS:
        return FUNCTION_VIEW_METHODS[name]
    if cls is None:
        return ["?"]
    verbs = ("get", "post", "put", "patch", "delete")
    return sorted(m.upper() for m in verbs if _overrides(cls, m))


def _overrides(cls: Any, method: str) -> bool:
    """Whether ``cls`` (or a base of it) defines a handler for ``method``."""
    from rest_framework.views import APIView

    own = getattr(cls, method, None)
    return own is not None and own is not getattr(APIView, method, None)


def http_endpoints() -> list[str]:
    """``"METHOD /path/<param>"`` for every routed endpoint (admin pages excluded)."""
    rows = []
    for route, callback in _walk(get_resolver().url_patterns):
        if route.startswith("/admin/"):
            continue
        rows += [f"{method} {route}" for method in _methods(callback)]
    return sorted(rows)


def ws_endpoints() -> list[str]:
    from sessions.routing import websocket_urlpatterns

    return sorted("WS /" + str(p.pattern) for p in websocket_urlpatterns)


STREAMS = {
    f"GET {route}"
    for route, callback in _walk(get_resolver().url_patterns)
    if getattr(callback, "__name__", "").endswith("_event_stream")
}


def required_scope(endpoint: str) -> str | None:
    """The ``required_scope`` of the DRF view serving ``endpoint`` (``None``: none/any)."""
    method, route = endpoint.split(" ", 1)
    callback = dict(_walk(get_resolver().url_patterns)).get(route)
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    view = (getattr(cls, "operation_views", None) or {}).get(method, cls)
    return getattr(view, "required_scope", None)


def test_every_route_has_a_row(db: Any) -> None:
    missing = [e for e in http_endpoints() if e not in EXPECTED and e not in SKIPPED]
    stale = [e for e in [*EXPECTED, *SKIPPED] if e not in http_endpoints()]
    assert not missing, f"endpoints without a row in tests/api/authz_matrix.py: {missing}"
    assert not stale, f"rows for endpoints that no longer exist: {stale}"
    assert sorted(WS_EXPECTED) == ws_endpoints()


class World:
    """One team ``lab`` (owner alice, member bob, viewer vic), a stranger, and one of each
    object, plus a credential per persona."""

    def __init__(self) -> None:
        self.owner = factories.make_user("alice")
        self.member = factories.make_user("bob")
        self.viewer = factories.make_user("vic")
        self.stranger = factories.make_user("mallory")
        from accounts.services import team_create

        self.team = team_create(user=self.owner, name="Lab", slug="lab")
        factories.add_member(self.team, self.member, "member")
        factories.add_member(self.team, self.viewer, "viewer")
        self.agent = factories.make_agent(self.owner, team=self.team, slug="echo")
        self.session = factories.make_session(self.owner, agent=self.agent, team=self.team)
        self.task = factories.finish_task(factories.make_task(self.session), result={"ok": 1})
        self.keys = {
            "owner": factories.make_token(self.owner),
            "member": factories.make_token(self.member),
            "viewer": factories.make_token(self.viewer),
            "stranger": factories.make_token(self.stranger),
        }
        self.wrong_scope = {
            scope: factories.make_token(self.owner, scopes=[scope])
            for scope in (Scope.AGENTS_READ, Scope.SESSIONS_READ)
        }
        expired = factories.make_token(self.owner)
        ApiKey.objects.filter(prefix=expired.split(".")[0]).update(
            expires_at=timezone.now() - dt.timedelta(minutes=1)
        )
        revoked = factories.make_token(self.owner)
        ApiKey.objects.filter(prefix=revoked.split(".")[0]).update(revoked_at=timezone.now())
        self.keys |= {"expired": expired, "revoked": revoked}
        self.owner_key_row = ApiKey.objects.filter(user=self.owner).first()
        self.params = self._params()

    def _params(self) -> dict[str, str]:
        from sessions.services.sharing import share_link_create, share_link_revoke

        link, self.share_token = share_link_create(session=self.session, user=self.owner)
        gone, self.revoked_share_token = share_link_create(session=self.session, user=self.owner)
        share_link_revoke(link=gone)
        params = {
            "session_id": str(self.session.uuid),
            "task_id": str(self.task.uuid),
            "agent_id": str(self.agent.uuid),
            "team_id": "lab",
            "username": "bob",
            "key_id": str(self.owner_key_row.uuid),
            "file_path": "notes.txt",
            "share_id": str(link.uuid),
            "process_id": "p-unknown",
            "name": "API_TOKEN",
            "resource_path": "api/v1",
        }
        params |= self._optional_params()
        return params

    def _optional_params(self) -> dict[str, str]:
        from providers.services import credential_create
        from schedules.services import schedule_create

        credential = credential_create(
            owner=self.owner, team=self.team, name="openai", provider="openai", secret="sk-x1"
        )
        schedule = schedule_create(
            owner=self.owner, team=self.team, agent=self.agent, name="nightly", cron="0 3 * * *"
        )
        from sessions.services.artifacts import artifact_create

        artifact = artifact_create(
            session=self.session, name="out.txt", content=b"hi\n", content_type="text/plain"
        )
        return {
            "credential_id": str(credential.uuid),
            "schedule_id": str(schedule.uuid),
            "artifact_id": str(artifact.uuid),
            **self._integration_params(),
            **self._debugger_params(),
        }

    def _debugger_params(self) -> dict[str, str]:
        """A breakpoint on the task and one on the agent, the owner's monitor, and the
        debugger action the command route is called with (the finished task answers 409)."""
        from debugger.models import Breakpoint
        from debugger.monitors import monitor_create

        on_task = Breakpoint.objects.create(task=self.task, created_by=self.owner, name="x")
        on_agent = Breakpoint.objects.create(agent=self.agent, created_by=self.owner, name="x")
        monitor = monitor_create(owner=self.owner, name="console")
        return {
            "breakpoint_id": str(on_task.uuid),
            "agent_breakpoint_id": str(on_agent.uuid),
            "action": "continue",
            "monitor_id": str(monitor.uuid),
        }

    def _integration_params(self) -> dict[str, str]:
        """Objects of the integrations: an async endpoint on the agent, an Alexa skill, a
        webhook with a delivery, an OAuth provider with the owner's connection."""
        from integrations.alexa.services import alexa_skill_create
        from integrations.connections.oauth import TokenSet
        from integrations.connections.services import connection_store, provider_create
        from integrations.webhooks.services import endpoint_create, ping_create
        from sessions.services.agents import agent_update

        agent_update(
            agent=self.agent, user=self.owner, endpoints=[{"name": "ping", "mode": "async"}]
        )
        skill = alexa_skill_create(
            owner=self.owner, team=self.team, agent=self.agent, name="Echo",
            application_id="amzn1.ask.skill.00000000-0000-0000-0000-000000000000",
        )  # fmt: skip
        webhook, _ = endpoint_create(
            team=self.team, user=self.owner, url="https://93.184.215.14/hooks",
            event_types=["task.succeeded"],
        )  # fmt: skip
        delivery = ping_create(endpoint=webhook, due_in_s=3600)
        provider = provider_create(
            user=self.owner, team=self.team, name="github", client_id="id",
            authorize_url="https://93.184.215.14/authorize", token_url="https://93.184.215.14/token",
        )  # fmt: skip
        connection = connection_store(
            provider=provider, user=self.owner, tokens=TokenSet(access_token="t0k3n")
        )
        return {
            "slug": "echo",
            "agent": "echo",
            "endpoint": "ping",
            "model": "echo",
            "provider": "github",
            "skill_id": str(skill.uuid),
            "webhook_id": str(webhook.uuid),
            "delivery_id": str(delivery.uuid),
            "provider_id": str(provider.uuid),
            "connection_id": str(connection.uuid),
        }

    def reset_files(self) -> None:
        self.session.workspace_path.mkdir(parents=True, exist_ok=True)
        (self.session.workspace_path / "notes.txt").write_text("hello\n")

    def bearer_for(self, persona: str, endpoint: str) -> str | None:
        if persona == "anonymous":
            return None
        if persona == "share_link":
            return self.share_token
        if persona == "wrong_scope":
            needed = required_scope(endpoint)
            wrong = Scope.SESSIONS_READ if str(needed).startswith("agents") else Scope.AGENTS_READ
            return self.wrong_scope[wrong]
        return self.keys[persona]

    def path_for(self, persona: str, route: str) -> str:
        params = dict(self.params, token=(
            self.share_token if persona == "share_link" else self.revoked_share_token
        ))  # fmt: skip

        def fill(match: re.Match[str]) -> str:
            return params[match.group(1).split(":")[-1]]

        return re.sub(r"<([^>]+)>", fill, route)


@pytest.fixture
def world(settings: Any, tmp_path: Any) -> World:
    settings.SHARE_PROVIDER_URL = ""
    settings.SANDBOX_BACKEND = "fake"  # sandbox start/exec succeed without real processes
    settings.CHATGPT_MAX_WAIT_S = 0.2  # actions wait for a task no executor runs here
    return World()


def _call(world: World, persona: str, endpoint: str) -> int:
    method, route = endpoint.split(" ", 1)
    client = APIClient()
    key = world.bearer_for(persona, endpoint)
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    world.reset_files()
    path = world.path_for(persona, route)
    with transaction.atomic():
        response = client.generic(method, path, json.dumps({}), content_type="application/json")
        status = response.status_code
        if getattr(response, "streaming", False):
            # Consume, not close(): the test client's iterator closes the response with
            # Django's connection-closing signal held off (a bare close() would drop the
            # connection this savepoint lives on).
            b"".join(response.streaming_content)
        transaction.set_rollback(True)
    return status


def test_http_endpoints_answer_each_persona_as_recorded(world: World) -> None:
    """One world, every endpoint and persona (each call rolled back): all mismatches at once."""
    mismatches, printing = [], bool(os.environ.get("MATRIX_PRINT"))
    for endpoint in sorted(set(EXPECTED) - STREAMS):
        observed = " ".join(str(_call(world, persona, endpoint)) for persona in PERSONAS)
        if printing:
            print(f'ROW    "{endpoint}": "{observed}",')
        elif observed != EXPECTED[endpoint]:
            mismatches.append(
                f"{endpoint}\n    expected {EXPECTED[endpoint]}\n    observed {observed}"
            )
    assert not mismatches, f"personas {PERSONAS}\n" + "\n".join(mismatches)


def _ws_first_frame(world: World, route: str) -> dict[str, Any] | None:
    """What a client sends first on routes whose protocol starts with a client frame."""
    if route == "WS /ws/runtimes/":
        return {"type": "runtime.register", "runtime_id": "matrix",
                "session_id": str(world.session.uuid), "kinds": ["python"]}  # fmt: skip
    return None


async def _ws_close_code(world: World, persona: str, route: str) -> str:
    from runtime_project.asgi import application

    path = world.path_for(persona, route.split(" ", 1)[1])
    headers = []
    key = world.bearer_for(persona, route)
    if key:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    if not connected:
        return "refused"
    first = _ws_first_frame(world, route)
    if first is not None:
        await communicator.send_json_to(first)
    try:
        while True:  # an error frame comes before the close; an open stream sends events
            frame = await communicator.receive_output(timeout=5)
            if frame["type"] == "websocket.close":
                return str(frame.get("code"))
            body = json.loads(frame["text"])
            kind = body.get("type", "")
            if (
                "seq" in body
                or kind.startswith(("stream.", "monitor."))
                or kind == "runtime.registered"
            ):
                return "open"
    finally:
        await communicator.disconnect()


def _stream_status(world: World, persona: str, endpoint: str) -> str:
    """Status of an SSE endpoint; a 200 stream is closed unread (it would never end)."""
    client = Client()
    key = world.bearer_for(persona, endpoint)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    response = client.get(world.path_for(persona, endpoint.split(" ", 1)[1]), **headers)
    response.close()
    return str(response.status_code)


@pytest.mark.django_db(transaction=True)
def test_streams_and_websocket_routes_answer_each_persona_as_recorded() -> None:
    """SSE views and consumers read the database from other threads, so this world is
    committed (only a runtime registering writes: its attachment, which no other row's answer
    depends on)."""
    world = World()
    mismatches, printing = [], bool(os.environ.get("MATRIX_PRINT"))
    for endpoint in sorted(STREAMS):
        observed = " ".join(_stream_status(world, persona, endpoint) for persona in PERSONAS)
        if printing:
            print(f'ROW    "{endpoint}": "{observed}",')
        elif observed != EXPECTED[endpoint]:
            mismatches.append(
                f"{endpoint}\n    expected {EXPECTED[endpoint]}\n    observed {observed}"
            )
    for route in sorted(WS_EXPECTED):
        observed = " ".join(
            async_to_sync(_ws_close_code)(world, persona, route) for persona in PERSONAS
        )
        if printing:
            print(f'ROW    "{route}": "{observed}",')
        elif observed != WS_EXPECTED[route]:
            mismatches.append(
                f"{route}\n    expected {WS_EXPECTED[route]}\n    observed {observed}"
            )
    assert not mismatches, f"personas {PERSONAS}\n" + "\n".join(mismatches)

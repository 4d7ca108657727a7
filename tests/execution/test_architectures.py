"""The architecture layer around the CLIs (issue 12): specs and inputs checked at the API,
task types → prompts, file changes of any command run, the installer's refusals, endpoints a
sandbox cannot reach. The real CLIs run in test_coding_agents.py."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from rest_framework.test import APIClient

from sessions.models import Session
from sessions.runners.architectures import ARCHITECTURES
from sessions.runners.architectures.prompts import Configuration, build_prompt
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from tests.helpers import events_of, wait_terminal

MODEL = {"base_url": "https://models.example.com/v1", "name": "m-1"}


@pytest.fixture
def client(owner: Any) -> APIClient:
    api = APIClient()
    api.force_authenticate(owner)
    return api


def create_agent(client: APIClient, spec: dict[str, Any], slug: str = "cli") -> Any:
    return client.post(
        "/api/v1/agents", {"slug": slug, "name": slug, "kind": "command", "spec": spec},
        format="json",
    )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"architecture": "opencode"}, "model"),  # a CLI needs a model
        ({"architecture": "cursor", "model": MODEL}, "architecture"),
        ({"architecture": "codex", "model": {"name": "m"}}, "base_url"),
        ({"architecture": "codex", "model": {**MODEL, "provider": "scripted"}}, "provider"),
        ({"architecture": "aider", "model": MODEL, "architecture_options": {"x": 1}}, "x"),
    ],
)
def test_bad_architecture_specs_are_refused_with_the_reason(
    client: APIClient, spec: dict[str, Any], where: str
) -> None:
    response = create_agent(client, spec)
    assert response.status_code == 400, response.content
    body = response.json()["error"]
    assert where in str(body["details"]) + body["message"]


@pytest.mark.django_db
def test_a_cli_agent_with_a_model_is_created(client: APIClient) -> None:
    spec = {"architecture": "opencode", "model": MODEL, "test_command": "pytest -q"}
    response = create_agent(client, spec)
    assert response.status_code == 201, response.content
    assert response.json()["spec"]["architecture"] == "opencode"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "configuration",
    [{"files": ["../etc/passwd"]}, {"specs": ["/abs/spec.md"]}, {"app_url": "file:///x"},
     {"instructions": "x", "unknown": 1}],
)  # fmt: skip
def test_bad_task_configuration_is_refused_at_creation(
    client: APIClient, configuration: dict[str, Any]
) -> None:
    agent = create_agent(client, {"architecture": "opencode", "model": MODEL}).json()
    session = client.post("/api/v1/sessions", {"agent": agent["id"]}, format="json").json()
    response = client.post(
        f"/api/v1/sessions/{session['id']}/tasks",
        {"task_type": "fix", "input": {"configuration": configuration}}, format="json",
    )  # fmt: skip
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in {"invalid_input", "validation_error"}


def test_each_task_type_gets_its_own_goal_and_the_configuration() -> None:
    config = Configuration(
        instructions="Add a --verbose flag.", app_url="http://app.test:3000",
        specs=("specs/cli.md",), files=("cli.py",), test_command="pytest -q",
    )  # fmt: skip
    prompts = {t: build_prompt(t, config) for t in ("run", "complete", "plan", "generate", "fix")}
    assert len({p.split("\n\n")[0] for p in prompts.values()}) == 5
    for prompt in prompts.values():
        for part in ("Add a --verbose flag.", "http://app.test:3000", "specs/cli.md", "cli.py"):
            assert part in prompt
        assert "`pytest -q`" in prompt
    assert "change no file" in prompts["plan"] and "artifacts/plan.md" in prompts["plan"]
    assert "fix the code" in prompts["fix"]
    # specs/ files are named when the task names none
    assert "specs/a.md, specs/b.md" in build_prompt(
        "generate", Configuration(), spec_files=["specs/b.md", "specs/a.md"]
    )
    assert build_prompt("chat", Configuration()) == build_prompt("run", Configuration())


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox
async def test_a_plain_command_reports_the_files_it_changed(
    executor: Any, make_task: Any, session: Session
) -> None:
    workspace = Path(session.workspace_path)
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "old.txt").write_text("x")
    (workspace / "keep.txt").write_text("same")
    (workspace / "grow.txt").write_text("a")
    task = await sync_to_async(make_task)(
        "echo new > new.txt; rm old.txt; echo more >> grow.txt; mkdir -p d/__pycache__; "
        "echo c > d/__pycache__/m.pyc; echo f > d/f.txt"
    )
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    changed = [e.data for e in await sync_to_async(events_of)(task) if e.type == "file.changed"]
    assert changed == [
        {"path": "d/f.txt", "change": "created"},
        {"path": "grow.txt", "change": "modified"},
        {"path": "new.txt", "change": "created"},
        {"path": "old.txt", "change": "deleted"},
    ]
    assert task.result["changed_files"] == ["d/f.txt", "grow.txt", "new.txt", "old.txt"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox
async def test_a_missing_cli_fails_the_task_when_auto_install_is_off(
    executor: Any, owner: Any, settings: Any, tmp_path: Path
) -> None:
    settings.CODING_AGENTS_DIR = tmp_path / "none"
    settings.CODING_AGENTS_AUTO_INSTALL = False
    settings.LLM_ENDPOINT_ALLOWED_HOSTS = ["192.0.2.10"]
    task = await _failed_run(executor, owner, "codex", "http://192.0.2.10:9/v1")
    assert task.error["code"] == "architecture_not_installed"
    assert "install_coding_agents codex" in task.error["message"]
    assert not (tmp_path / "none").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox
async def test_a_loopback_model_is_refused_for_a_sandbox_without_network(
    executor: Any, owner: Any, settings: Any
) -> None:
    settings.LLM_ENDPOINT_ALLOWED_HOSTS = ["127.0.0.1"]
    task = await _failed_run(executor, owner, "opencode", "http://127.0.0.1:9/v1")
    assert task.error["code"] == "model_unreachable"


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox
async def test_a_private_model_endpoint_is_refused_unless_allowed(
    executor: Any, owner: Any
) -> None:
    task = await _failed_run(executor, owner, "aider", "http://10.1.2.3:8000/v1")
    assert task.error["code"] == "outbound_refused"


async def _failed_run(executor: Any, owner: Any, architecture: str, base_url: str) -> Any:
    """A ``fix`` task of a new agent of ``architecture`` with its model at ``base_url``, run
    to its end, which must be a failure."""
    spec = {"architecture": architecture, "model": {**MODEL, "base_url": base_url}}
    from sessions.services.tasks import task_create

    def create() -> Any:
        agent = agent_create(owner=owner, slug="cli-x", name="cli", kind="command", spec=spec)
        session = session_create(owner=owner, agent=agent)
        return task_create(session=session, user=owner, task_type="fix", input={})[0]

    task = await sync_to_async(create)()
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "failed"
    return task


def test_install_coding_agents_lists_what_is_installed(settings: Any, tmp_path: Path) -> None:
    settings.CODING_AGENTS_DIR = tmp_path
    out = io.StringIO()
    call_command("install_coding_agents", "--list", stdout=out)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == list(ARCHITECTURES)
    assert "opencode: opencode-ai@1.18.33 -" in lines
    assert all(line.endswith(" -") for line in lines)  # nothing installed there

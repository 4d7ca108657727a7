"""Coding-agent architectures end to end (issue 12): the real OpenCode, Codex CLI and Aider,
installed pinned by the server, run as ``command`` agents in a real bubblewrap sandbox without
network, reaching the scripted model (real HTTP) only through the sandbox's egress proxy."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from rest_framework.test import APIClient

from sessions.models import Agent, Session, Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from sessions.runners.transcripts import converter_for
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_cancel, task_create
from tests.execution import coding_agents as ca
from tests.execution.test_command_runner import _alive_with_marker
from tests.helpers import events_of, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]

RUN_TIMEOUT_S = 240  # the first run of each CLI installs it (npm / uv, from their caches: ~10 s)


@pytest.fixture(scope="module")
def address() -> str:
    return ca.host_address()


@pytest.fixture
def model(address: str, settings: Any, monkeypatch: Any) -> Any:
    """The scripted model on a non-loopback address, allowed as a model endpoint, with the
    sandbox's egress proxy allowed to reach it (a private address)."""
    settings.LLM_ENDPOINT_ALLOWED_HOSTS = [address]
    settings.SANDBOX_EGRESS_ALLOW_PRIVATE = True
    monkeypatch.setenv("TEST_MODEL_KEY", ca.API_KEY)
    with ScriptedLLM(host=address) as llm:
        yield llm


def make_session(owner: Any, architecture: str, llm: ScriptedLLM, **spec: Any) -> Session:
    model = {"base_url": llm.base_url, "name": "scripted-1", "api_key_env": "TEST_MODEL_KEY"}
    if architecture == "claude-code":
        model.update(provider="anthropic", base_url=llm.anthropic_base_url)
    agent: Agent = agent_create(
        owner=owner, slug=f"{architecture}-agent", name=architecture, kind="command",
        spec={
            "architecture": architecture,
            "model": model,
            "test_command": ca.TEST_COMMAND,
            **spec,
        },
    )  # fmt: skip
    session = session_create(owner=owner, agent=agent)
    ca.write_fix_workspace(Path(session.workspace_path))
    return session


async def run(owner: Any, session: Session, executor: Any, **task: Any) -> Task:
    created, _ = await sync_to_async(task_create)(session=session, user=owner, **task)
    executor.kick()
    return await wait_terminal(created, timeout=RUN_TIMEOUT_S)


def of_type(events: list[Any], type_: str) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == type_]


def assert_key_never_leaked(events: list[Any], task: Task) -> None:
    text = json.dumps([e.data for e in events]) + json.dumps(task.result) + json.dumps(task.error)
    assert ca.API_KEY not in text


def joined_deltas(items: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Consecutive deltas of one message as one: the event buffer joins them when they are
    flushed together, which depends on timing."""
    out: list[tuple[str, dict[str, Any]]] = []
    for kind, data in items:
        if (
            out
            and kind == "message.delta" == out[-1][0]
            and (out[-1][1]["message_id"] == data["message_id"])
        ):
            out[-1] = (kind, {**out[-1][1], "text": out[-1][1]["text"] + data["text"]})
        else:
            out.append((kind, data))
    return out


def assert_replay_gives_the_same_events(
    task: Task, events: list[Any], transcript: Path, architecture: str
) -> None:
    """The converter is a pure function of the transcript: the raw stdout the run kept, fed
    again to a fresh converter, gives exactly the events the run streamed from it."""
    converter = converter_for(architecture, workspace="/workspace", id_prefix=str(task.uuid)[:8])
    replayed = [e for line in transcript.read_text().split("\n") for e in converter.feed(line)]
    replayed += converter.finish(0)
    produced = {e.type for e in replayed}
    streamed = [(e.type, e.data) for e in events if e.type in produced]
    # the workspace diff may add file.changed events the transcript did not report
    # (and the installer's progress is a log of the server's, not of the transcript)
    streamed = [x for x in streamed if x[0] != "file.changed" or "diff" in x[1]]
    streamed = [x for x in streamed if x[1].get("source") != "installer"]
    assert joined_deltas([(e.type, e.data) for e in replayed]) == joined_deltas(streamed)


def phases(events: list[Any]) -> list[str]:
    return [d["phase"] for d in of_type(events, "task.status") if d.get("phase")]


FIX_INPUT = {
    "configuration": {
        "instructions": "The calculator adds wrong. Make the tests pass.",
        "files": ["calc.py"],
    }
}


async def test_opencode_fixes_a_failing_test(
    executor: Any, owner: Any, model: ScriptedLLM, address: str, caplog: Any
) -> None:
    # A second server on the same host, not the model: the sandbox's proxy must refuse it.
    with ScriptedLLM(host=address) as other:
        probe = (
            "python3 -c \"import urllib.request as u\ntry:\n u.urlopen('"
            + other.base_url + "/models', timeout=5); print('reached')\n"
            "except Exception as e: print('refused', e)\""
        )  # fmt: skip
        model.add(*ca.opencode_fix_turns(extra_bash=probe))
        session = await sync_to_async(make_session)(owner, "opencode", model)
        task = await run(owner, session, executor, task_type="fix", input=FIX_INPUT)
        assert other.requests == []
        # The proxy refused the probe and nothing else: OpenCode tried no update check,
        # model-list or plugin download (the offline settings of its architecture).
        refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert refused and all(other.base_url.split("/")[2] in m for m in refused), refused
    assert task.status == "succeeded", task.error
    workspace = Path(session.workspace_path)
    assert (workspace / "calc.py").read_text() == ca.CALC_FIXED

    events = await sync_to_async(events_of)(task)
    calls = of_type(events, "tool.call")
    assert [c["name"] for c in calls] == ["read", "edit", "bash", "bash"]
    results = {r["call_id"]: r for r in of_type(events, "tool.result")}
    probe_result, test_result = results[calls[2]["call_id"]], results[calls[3]["call_id"]]
    assert "refused" in probe_result["output"] and "reached" not in probe_result["output"]
    assert test_result["exit_code"] == 0 and "1 passed" in test_result["output"]
    changed = of_type(events, "file.changed")
    assert changed[0]["path"] == "calc.py" and changed[0]["change"] == "modified"
    assert "+    return a + b" in changed[0]["diff"]
    messages = of_type(events, "message.completed")
    assert messages[-1]["text"] == ca.ANSWER
    assert [u["prompt_tokens"] for u in of_type(events, "usage")][:2] == [1200, 1300]
    assert of_type(events, "process.stdout") == []  # the transcript became events
    assert phases(events).index("editing") < phases(events).index("testing")
    assert_key_never_leaked(events, task)

    # The model got the task as a prompt, with the key, over real HTTP through the proxy.
    first = model.requests[0]
    prompt = json.dumps(first["messages"])
    assert "The tests fail" in prompt and "The calculator adds wrong" in prompt
    assert "python3 -m pytest -q tests" in prompt
    assert model.headers[0]["authorization"] == f"Bearer {ca.API_KEY}"

    assert task.result["architecture"] == "opencode"
    assert task.result["changed_files"] == ["calc.py"]  # caches (__pycache__…) left out
    assert task.result["text"] == messages[-1]["text"]
    stdout_log = workspace / task.result["logs"][0]
    assert stdout_log.name == "stdout.log" and '"type":"tool_use"' in stdout_log.read_text()
    assert_replay_gives_the_same_events(task, events, stdout_log, "opencode")
    for folder in ("specs", "tests", "artifacts"):
        assert (workspace / folder).is_dir()


async def test_codex_fixes_a_failing_test(executor: Any, owner: Any, model: ScriptedLLM) -> None:
    model.add(*ca.codex_fix_turns())
    session = await sync_to_async(make_session)(owner, "codex", model)
    task = await run(owner, session, executor, task_type="fix", input=FIX_INPUT)
    assert task.status == "succeeded", task.error
    assert (Path(session.workspace_path) / "calc.py").read_text() == ca.CALC_FIXED
    events = await sync_to_async(events_of)(task)
    calls = of_type(events, "tool.call")
    assert [c["name"] for c in calls] == ["exec_command", "apply_patch", "exec_command"]
    results = of_type(events, "tool.result")
    assert results[-1]["exit_code"] == 0 and "1 passed" in results[-1]["output"]
    assert {c["path"] for c in of_type(events, "file.changed")} == {"calc.py"}
    assert of_type(events, "message.completed")[-1]["text"] == ca.ANSWER
    assert sum(u["prompt_tokens"] for u in of_type(events, "usage")) == 5400
    assert "testing" in phases(events)
    assert_key_never_leaked(events, task)
    assert model.headers[0]["authorization"] == f"Bearer {ca.API_KEY}"
    assert len(model.requests) == 4


async def test_claude_code_fixes_a_failing_test(
    executor: Any, owner: Any, model: ScriptedLLM
) -> None:
    model.add(*ca.claude_code_fix_turns())
    session = await sync_to_async(make_session)(owner, "claude-code", model)
    task = await run(owner, session, executor, task_type="fix", input=FIX_INPUT)
    assert task.status == "succeeded", task.error
    assert (Path(session.workspace_path) / "calc.py").read_text() == ca.CALC_FIXED
    events = await sync_to_async(events_of)(task)
    assert [c["name"] for c in of_type(events, "tool.call")] == ["Read", "Edit", "Bash"]
    results = of_type(events, "tool.result")
    assert results[-1]["exit_code"] == 0 and "1 passed" in results[-1]["output"]
    changed = of_type(events, "file.changed")
    assert changed[0]["path"] == "calc.py" and "+    return a + b" in changed[0]["diff"]
    # --include-partial-messages: the answer streams as deltas, then one completed message
    deltas = [d["text"] for d in of_type(events, "message.delta")]
    assert "".join(deltas).endswith(ca.ANSWER)
    assert of_type(events, "message.completed")[-1]["text"] == ca.ANSWER
    assert_key_never_leaked(events, task)
    assert model.headers[0]["x-api-key"] == ca.API_KEY
    stdout_log = Path(session.workspace_path) / task.result["logs"][0]
    assert_replay_gives_the_same_events(task, events, stdout_log, "claude-code")
    assert len(model.requests) == 4


async def test_aider_fixes_a_failing_test(executor: Any, owner: Any, model: ScriptedLLM) -> None:
    model.add(*ca.aider_fix_turns())
    session = await sync_to_async(make_session)(owner, "aider", model)
    task = await run(owner, session, executor, task_type="fix", input=FIX_INPUT)
    assert task.status == "succeeded", task.error
    assert (Path(session.workspace_path) / "calc.py").read_text() == ca.CALC_FIXED
    events = await sync_to_async(events_of)(task)
    changed = of_type(events, "file.changed")
    assert [(c["path"], c["change"]) for c in changed] == [("calc.py", "modified")]
    tests_run = [r for r in of_type(events, "tool.result") if "1 passed" in r["output"]]
    assert tests_run and tests_run[0]["exit_code"] == 0
    assert "SEARCH" in of_type(events, "message.completed")[0]["text"]
    assert len(model.requests) == 1  # the tests passed: no reflection round
    assert_key_never_leaked(events, task)


async def test_plan_changes_nothing_and_saves_the_answer(
    executor: Any, owner: Any, model: ScriptedLLM
) -> None:
    plan = "1. In calc.py, make `add` return a + b.\n2. Run the tests."
    model.add(Turn(chunks=[plan]))
    session = await sync_to_async(make_session)(owner, "opencode", model)
    task = await run(owner, session, executor, task_type="plan", input=FIX_INPUT)
    assert task.status == "succeeded", task.error
    workspace = Path(session.workspace_path)
    assert (workspace / "calc.py").read_text() == ca.CALC_BUGGY
    assert (workspace / "artifacts" / "plan.md").read_text() == plan
    assert task.result["artifacts"] == ["artifacts/plan.md"]
    assert task.result["text"] == plan
    events = await sync_to_async(events_of)(task)
    assert {"path": "artifacts/plan.md", "change": "created"} in of_type(events, "file.changed")
    argv = of_type(events, "process.started")[0]["argv"]
    assert argv[argv.index("--agent") + 1] == "plan"  # OpenCode's read-only agent
    assert "Plan the work only" in json.dumps(model.requests[0]["messages"])


async def test_a_model_error_fails_the_task_with_its_code(
    executor: Any, owner: Any, model: ScriptedLLM
) -> None:
    model.add(*[Turn(status=401)] * 3)
    session = await sync_to_async(make_session)(owner, "aider", model)
    task = await run(owner, session, executor, task_type="fix", input=FIX_INPUT)
    # Aider exits 0 after a 401: the transcript, not the exit code, decides.
    assert task.status == "failed"
    assert task.error["code"] == "provider_error"
    assert task.error["details"]["architecture"] == "aider"
    assert (Path(session.workspace_path) / "calc.py").read_text() == ca.CALC_BUGGY
    assert_key_never_leaked(await sync_to_async(events_of)(task), task)


async def test_a_key_quoted_back_by_the_provider_is_masked(
    executor: Any, owner: Any, model: ScriptedLLM
) -> None:
    """A provider error that quotes the key: the CLI prints it, the task's error, events and
    kept transcript show the mask instead."""
    model.add(*[Turn(stream_error=f"Invalid API key {ca.API_KEY}.")] * 5)
    session = await sync_to_async(make_session)(owner, "codex", model)
    task = await run(owner, session, executor, task_type="fix", input=FIX_INPUT)
    assert task.status == "failed"
    assert "[secret:MODEL_API_KEY]" in task.error["message"]
    events = await sync_to_async(events_of)(task)
    assert_key_never_leaked(events, task)
    kept = (Path(session.workspace_path) / task.result["logs"][0]).read_text()
    assert ca.API_KEY not in kept and "[secret:MODEL_API_KEY]" in kept


async def test_cancel_stops_the_cli_and_its_children(
    executor: Any, owner: Any, model: ScriptedLLM
) -> None:
    marker = f"cli-child-{time.time_ns()}"
    sleeper = f'python3 -c "import time; time.sleep(300)" {marker}'
    model.add(
        Turn(tool_calls=[ca.call("read", filePath="/workspace/calc.py")]),
        Turn(tool_calls=[ca.call("bash", command=sleeper, description="wait")]),
        Turn(chunks=["never reached"]),
    )
    session = await sync_to_async(make_session)(owner, "opencode", model)
    created, _ = await sync_to_async(task_create)(
        session=session, user=owner, task_type="run", input=FIX_INPUT
    )
    executor.kick()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not _alive_with_marker(marker):
        assert time.monotonic() < deadline, "the CLI never started its command"
        await asyncio.sleep(0.2)
    # GET /tasks/{id} shows the phase the transcript put the run in (OpenCode prints a tool
    # call once it finished: the read, not yet the running command).
    api = APIClient()
    api.force_authenticate(owner)
    body = (await sync_to_async(api.get)(f"/api/v1/tasks/{created.uuid}")).json()
    assert (body["status"], body["current_phase"]) == ("running", "reading")
    await sync_to_async(task_cancel)(task=created)
    task = await wait_terminal(created, timeout=60)
    assert task.status == "cancelled"
    deadline = time.monotonic() + 10
    while _alive_with_marker(marker) or _alive_with_marker("opencode-1.18.33"):
        assert time.monotonic() < deadline, "the CLI or its child survived the cancel"
        await asyncio.sleep(0.2)

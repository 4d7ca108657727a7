"""The ``llm`` kind's pauses, child agents, budgets and the tools beyond files and shell, end
to end: a scripted OpenAI-compatible server over real HTTP, the real executor, a real
bubblewrap sandbox, the real outbound guard."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from runtime_project.exceptions import Conflict, InvalidInput
from sessions.models import Task
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_cancel, task_create
from sessions.services.waiting import task_resume
from tests.helpers import event_data, events_of, wait_terminal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]


def call(name: str, **arguments: Any) -> dict[str, str]:
    return {"name": name, "arguments": json.dumps(arguments)}


@pytest.fixture
def make_agent(owner: Any, llm: ScriptedLLM) -> Any:
    def make(slug: str = "assistant", **spec: Any) -> Any:
        full = {"model": {"base_url": llm.base_url, "name": "scripted-1"}, "max_retries": 0,
                **spec}  # fmt: skip
        return agent_create(owner=owner, slug=slug, name=slug, kind="llm", spec=full)

    return make


async def start(owner: Any, agent: Any, message: str, session: Any = None) -> tuple[Task, Any]:
    session = session or await sync_to_async(session_create)(owner=owner, agent=agent)
    task, _ = await sync_to_async(task_create)(
        session=session, user=owner, input={"message": message}
    )
    return task, session


async def wait_status(task: Task, status: str, timeout: float = 20) -> Task:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        task = await Task.objects.select_related("session").aget(pk=task.pk)
        if task.status == status:
            return task
        assert task.status not in ("succeeded", "failed", "cancelled", "timed_out"), (
            task.status, task.error,
        )  # fmt: skip
        assert time.monotonic() < deadline, f"still {task.status}"
        await asyncio.sleep(0.05)


async def stop_sandbox(session: Any) -> None:
    from sandboxes.registry import get_backend

    await get_backend().stop(str(session.uuid))


async def test_ask_user_pauses_the_task_and_the_reply_resumes_it(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any
) -> None:
    agent = await sync_to_async(make_agent)(tools=["ask_user", "write_file"])
    llm.add(
        Turn(chunks=["One question first."], tool_calls=[
            call("ask_user", question="Which file name?", choices=["a.txt", "b.txt"]),
        ]),
        Turn(tool_calls=[call("write_file", path="b.txt", content="chosen\n")]),
        Turn(chunks=["Wrote b.txt."]),
    )  # fmt: skip
    task, session = await start(owner, agent, "Write a file.")
    executor.kick()
    task = await wait_status(task, "waiting")
    assert task.pending_action["kind"] == "ask_user"
    assert task.pending_action["question"] == "Which file name?"
    assert task.worker == "" and len(llm.requests) == 1  # the worker is free while it waits

    # Another task of the session waits behind the paused one (the conversation is paused).
    queued, _ = await sync_to_async(task_create)(
        session=session, user=owner, input={"message": "later"}
    )
    with pytest.raises(InvalidInput):
        await sync_to_async(task_resume)(task=task, answer={"decision": "approve"})
    await sync_to_async(task_resume)(task=task, answer={"reply": "b.txt"})
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    assert task.result == {"text": "Wrote b.txt.", "steps": 3}
    assert (session.workspace_path / "b.txt").read_text() == "chosen\n"
    # The model saw the user's answer as the ask_user result, and the turn only once.
    second = llm.requests[1]["messages"]
    assert [m["content"] for m in second if m["role"] == "user"] == ["Write a file."]
    assert {"role": "tool", "tool_call_id": "call_0", "content": "b.txt"} in second
    assert task.usage["prompt_tokens"] == 3 * 7  # totals span both runs of the task
    kinds = [e.type for e in await sync_to_async(events_of)(task)]
    assert "input.requested" in kinds and "input.received" in kinds
    statuses = [d["status"] for d in await sync_to_async(event_data)(task, "task.status")]
    moves = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert moves == ["queued", "running", "waiting", "queued", "running", "succeeded"]
    with pytest.raises(Conflict):
        await sync_to_async(task_resume)(task=task, answer={"reply": "again"})
    assert (await wait_terminal(queued)).status == "succeeded"  # ran after the paused one
    await stop_sandbox(session)


async def test_approvals_approve_deny_and_edit(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any
) -> None:
    agent = await sync_to_async(make_agent)(
        tools=["shell", "read_file"], requires_approval=["shell"]
    )
    llm.add(
        # A reply with a free call and one that needs approval: the free one runs first.
        Turn(tool_calls=[call("shell", command="echo one > one.txt"),
                         call("read_file", path="missing.txt")]),
        Turn(tool_calls=[call("shell", command="rm -rf /workspace/*")]),
        Turn(tool_calls=[call("shell", command="echo draft")]),
        Turn(chunks=["Done."]),
    )  # fmt: skip
    task, session = await start(owner, agent, "Go.")
    executor.kick()
    task = await wait_status(task, "waiting")
    assert task.pending_action == {
        "kind": "approval", "call_id": "call_0", "name": "shell",
        "arguments": {"command": "echo one > one.txt"},
    }  # fmt: skip
    results = await sync_to_async(event_data)(task, "tool.result")
    assert [r["name"] for r in results] == ["read_file"]  # ran while the shell call waits
    assert not (session.workspace_path / "one.txt").exists()
    await sync_to_async(task_resume)(task=task, answer={"decision": "approve"})
    executor.kick()

    task = await wait_status(task, "waiting")
    assert task.pending_action["arguments"] == {"command": "rm -rf /workspace/*"}
    assert (session.workspace_path / "one.txt").read_text() == "one\n"
    await sync_to_async(task_resume)(
        task=task, answer={"decision": "deny", "reason": "never delete the workspace"}
    )
    executor.kick()

    task = await wait_status(task, "waiting")
    with pytest.raises(InvalidInput):  # an edit needs arguments
        await sync_to_async(task_resume)(task=task, answer={"decision": "edit"})
    await sync_to_async(task_resume)(
        task=task, answer={"decision": "edit", "arguments": {"command": "echo final"}}
    )
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    assert (session.workspace_path / "one.txt").exists()  # the denied rm never ran
    results = await sync_to_async(event_data)(task, "tool.result")
    outputs = {r["call_id"] + r["name"]: r for r in results}
    assert len(results) == 4
    denied = [r for r in results if r.get("denied")]
    assert denied and denied[0]["output"] == (
        "error: the user denied this call: never delete the workspace"
    )
    edited = [r for r in results if "arguments" in r]
    assert edited[0]["arguments"] == {"command": "echo final"}
    assert edited[0]["output"] == "exit_code: 0\nfinal\n"
    assert outputs  # every call got exactly one result
    calls = await sync_to_async(event_data)(task, "tool.call")
    assert sum(1 for c in calls if c.get("requires_approval")) == 3
    await stop_sandbox(session)


async def test_cancelling_a_waiting_task(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any
) -> None:
    agent = await sync_to_async(make_agent)(tools=["ask_user"])
    llm.add(Turn(tool_calls=[call("ask_user", question="?")]))
    task, _ = await start(owner, agent, "Ask me.")
    executor.kick()
    task = await wait_status(task, "waiting")
    task = await sync_to_async(task_cancel)(task=task)
    assert task.status == "cancelled" and task.pending_action is None


async def test_call_agent_runs_a_child_task(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any
) -> None:
    await sync_to_async(make_agent)("helper", system_prompt="You help.", tools=["ask_user"])
    agent = await sync_to_async(make_agent)(tools=["call_agent"], agents=["helper"])
    llm.add(
        Turn(tool_calls=[call("call_agent", agent="helper", input={"message": "Say hi."})]),
        # The child's own turns: it may not pause, so its ask_user is an error it sees.
        Turn(tool_calls=[call("ask_user", question="really?")]),
        Turn(chunks=["hi"]),
        Turn(tool_calls=[call("call_agent", agent="stranger", input={"message": "x"})]),
        Turn(chunks=["The helper said hi."]),
    )  # fmt: skip
    task, session = await start(owner, agent, "Delegate.")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    child = await Task.objects.select_related("agent").aget(parent=task)
    assert (child.agent.slug, child.status, child.result["text"]) == ("helper", "succeeded", "hi")
    child_requests = llm.requests[1]["messages"]
    assert child_requests[0] == {"role": "system", "content": "You help."}
    assert child_requests[1:] == [{"role": "user", "content": "Say hi."}]  # only its own turn
    child_results = await sync_to_async(event_data)(child, "tool.result")
    assert child_results[0]["is_error"] and "cannot ask the user" in child_results[0]["output"]
    results = await sync_to_async(event_data)(task, "tool.result")
    first = json.loads(results[0]["output"])
    assert (first["task_id"], first["status"]) == (str(child.uuid), "succeeded")
    assert results[1]["is_error"] and "not one of" in results[1]["output"]  # schema enum
    # The parent's conversation does not include the child's turn.
    assert all(m.get("content") != "Say hi." for m in llm.requests[-1]["messages"])
    await stop_sandbox(session)


async def test_python_and_apply_patch_tools(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any
) -> None:
    agent = await sync_to_async(make_agent)(tools=["python", "apply_patch", "write_file"])
    patch = (
        "--- a/greet.py\n+++ b/greet.py\n@@ -1 +1 @@\n-print('hello')\n+print('hello, patched')\n"
    )
    escape = "--- a/../outside.txt\n+++ b/../outside.txt\n@@ -0,0 +1 @@\n+x\n"
    llm.add(
        Turn(tool_calls=[call("write_file", path="greet.py", content="print('hello')\n")]),
        Turn(tool_calls=[call("apply_patch", patch=patch)]),
        Turn(tool_calls=[call("python", code="import runpy; runpy.run_path('greet.py')")]),
        Turn(tool_calls=[call("apply_patch", patch=escape)]),
        Turn(chunks=["ok"]),
    )  # fmt: skip
    task, session = await start(owner, agent, "Patch it.")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    results = await sync_to_async(event_data)(task, "tool.result")
    assert results[1]["output"].startswith("exit_code: 0"), results[1]
    assert results[2]["output"] == "exit_code: 0\nhello, patched\n"
    assert not results[3]["output"].startswith("exit_code: 0")  # refused to leave /workspace
    assert not (session.workspace_path.parent / "outside.txt").exists()
    await stop_sandbox(session)


class _Site:
    """A tiny HTTP site on 127.0.0.1 counting its requests."""

    def __init__(self) -> None:
        self.hits = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.hits += 1
                body = b"internal secret page"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_http_fetch_refuses_private_addresses_unless_allowed(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any, settings: Any
) -> None:
    site = _Site()
    try:
        closed = await sync_to_async(make_agent)("closed", tools=["http_fetch"])
        opened = await sync_to_async(make_agent)(
            "opened", tools=["http_fetch"], tool_options={"http_fetch": {"max_bytes": 8}}
        )
        narrow = await sync_to_async(make_agent)(
            "narrow", tools=["http_fetch"],
            tool_options={"http_fetch": {"only_hosts": ["docs.example.com"]}},
        )  # fmt: skip
        llm.add(Turn(tool_calls=[call("http_fetch", url=site.url)]), Turn(chunks=["no"]))
        task, _ = await start(owner, closed, "Fetch it.")
        executor.kick()
        task = await wait_terminal(task)
        result = (await sync_to_async(event_data)(task, "tool.result"))[0]
        assert result["is_error"] and site.hits == 0, result
        assert "127.0.0.1" in result["output"]

        # Only the operator opens private addresses; an agent spec can only narrow the list.
        settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
        llm.add(Turn(tool_calls=[call("http_fetch", url=site.url)]), Turn(chunks=["no"]))
        task, _ = await start(owner, narrow, "Fetch it.")
        executor.kick()
        task = await wait_terminal(task)
        result = (await sync_to_async(event_data)(task, "tool.result"))[0]
        assert result["is_error"] and "not one of the hosts" in result["output"], result
        assert site.hits == 0

        llm.add(Turn(tool_calls=[call("http_fetch", url=site.url)]), Turn(chunks=["yes"]))
        task, _ = await start(owner, opened, "Fetch it.")
        executor.kick()
        task = await wait_terminal(task)
        result = (await sync_to_async(event_data)(task, "tool.result"))[0]
        assert not result["is_error"] and site.hits == 1, result
        head, _, body = result["output"].partition("\n\n")
        assert json.loads(head)["status"] == 200
        assert body == "internal\n[truncated]"  # cut at max_bytes
    finally:
        site.close()


async def test_parallel_tool_calls_run_concurrently(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any
) -> None:
    # Each command finishes only once the other has started: run one after the other, the
    # first would hit its timeout.
    wait_for = (
        "touch {me}; for i in $(seq 100); do [ -f {other} ] && exit 0; sleep 0.05; done; exit 9"
    )
    agent = await sync_to_async(make_agent)(tools=["shell"])
    llm.add(
        Turn(tool_calls=[call("shell", command=wait_for.format(me="a", other="b"), timeout_s=10),
                         call("shell", command=wait_for.format(me="b", other="a"), timeout_s=10)]),
        Turn(chunks=["both"]),
    )  # fmt: skip
    task, session = await start(owner, agent, "Both at once.")
    executor.kick()
    task = await wait_terminal(task)
    outputs = [r["output"] for r in await sync_to_async(event_data)(task, "tool.result")]
    assert outputs == ["exit_code: 0\n", "exit_code: 0\n"]
    await stop_sandbox(session)


async def test_token_and_cost_budgets(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any
) -> None:
    priced = {"base_url": llm.base_url, "name": "scripted-1",
              "pricing": {"prompt_per_mtok": 1_000_000, "completion_per_mtok": 2_000_000}}  # fmt: skip
    tokens = await sync_to_async(make_agent)("tokens", tools=["list_files"], max_total_tokens=20)
    money = await sync_to_async(make_agent)(
        "money", model=priced, tools=["list_files"], max_cost_usd=20
    )
    loop = [Turn(tool_calls=[call("list_files")]) for _ in range(3)]
    llm.add(*loop)
    task, session = await start(owner, tokens, "Loop.")
    executor.kick()
    task = await wait_terminal(task)
    assert (task.status, task.error["code"]) == ("failed", "token_limit")
    assert task.usage["prompt_tokens"] + task.usage["completion_tokens"] == 24  # 2 calls
    await stop_sandbox(session)

    llm.turns.clear()
    llm.add(*loop)
    task, session = await start(owner, money, "Loop.")
    executor.kick()
    task = await wait_terminal(task)
    assert (task.status, task.error["code"]) == ("failed", "cost_limit")
    usage = await sync_to_async(event_data)(task, "usage")
    assert usage[0]["cost_usd"] == 7 * 1.0 + 5 * 2.0  # 7 prompt, 5 completion tokens
    assert task.usage["cost_usd"] == 2 * 17.0
    await stop_sandbox(session)


async def test_a_model_endpoint_on_a_private_address_is_refused(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any, settings: Any
) -> None:
    settings.LLM_ENDPOINT_ALLOWED_HOSTS = []  # a shared deployment's default
    agent = await sync_to_async(make_agent)()
    task, _ = await start(owner, agent, "hello?")
    executor.kick()
    task = await wait_terminal(task)
    assert (task.status, task.error["code"]) == ("failed", "outbound_refused")
    assert task.error["details"]["reason"] == "loopback"
    assert llm.requests == []  # nothing reached the endpoint


@pytest.fixture
def mcp_url(settings: Any) -> Iterator[str]:
    from tests.execution.test_mcp_client import _start_server
    from tests.procs import stop

    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]  # the test's MCP server is on loopback
    proc, url = _start_server()
    yield url
    stop(proc)


async def test_mcp_server_tools_are_offered_and_called(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any, mcp_url: str
) -> None:
    from tests.procs import free_port

    closed = f"http://127.0.0.1:{free_port()}/mcp"
    agent = await sync_to_async(make_agent)(
        mcp_servers=[{"name": "fx", "url": mcp_url, "tools": ["add", "fail"]},
                     {"name": "gone", "url": closed, "timeout_s": 5}],
        requires_approval=["fx__fail"],
    )  # fmt: skip
    llm.add(
        Turn(tool_calls=[call("fx__add", a=2, b=3), call("fx__add", a="x")]),
        Turn(tool_calls=[call("fx__fail")]),
        Turn(chunks=["The sum is 5."]),
    )  # fmt: skip
    task, _ = await start(owner, agent, "Add 2 and 3.")
    executor.kick()
    task = await wait_status(task, "waiting")  # fx__fail needs approval, like any tool
    await sync_to_async(task_resume)(task=task, answer={"decision": "approve"})
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    offered = sorted(t["function"]["name"] for t in llm.requests[0]["tools"])
    assert offered == ["fx__add", "fx__fail"]
    results = await sync_to_async(event_data)(task, "tool.result")
    by_call = {(r["call_id"], r["name"]): r for r in results[:2]}  # same reply, either order
    assert (by_call["call_0", "fx__add"]["output"], by_call["call_0", "fx__add"]["is_error"]) == (
        "5", False,
    )  # fmt: skip
    invalid = by_call["call_1", "fx__add"]
    assert invalid["is_error"] and "invalid tool call" in invalid["output"]  # checked locally
    assert results[2]["name"] == "fx__fail" and results[2]["is_error"]
    errors = await sync_to_async(event_data)(task, "error")
    # Reported by each run of the task (before the pause and after it), the server never named.
    assert {e["server"] for e in errors if e["code"] == "mcp_unavailable"} == {"gone"}


async def test_a_stored_credential_is_sent_to_the_provider_and_nowhere_else(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any, settings: Any
) -> None:
    from providers.services import credential_create

    secret = "sk-live-0123456789abcdef"
    await sync_to_async(credential_create)(
        owner=owner, name="main", provider="openai", secret=secret
    )
    settings.LLM_MODELS = [{"id": "scripted-1", "provider": "openai",
                            "pricing": {"prompt_per_mtok": 1.0, "completion_per_mtok": 1.0}}]  # fmt: skip
    agent = await sync_to_async(make_agent)(
        model={"base_url": llm.base_url, "name": "scripted-1", "credential": "main"},
        tools=["shell"],
    )
    llm.add(Turn(tool_calls=[call("shell", command="env | grep -c sk-live || true")]),
            Turn(chunks=["ok"]))  # fmt: skip
    task, session = await start(owner, agent, "hi")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    assert {h["authorization"] for h in llm.headers} == {f"Bearer {secret}"}
    log = json.dumps([e.data for e in await sync_to_async(events_of)(task)])
    assert secret not in log and "sk-live" not in json.dumps(task.result)
    assert task.usage["cost_usd"] == pytest.approx(2 * 12 / 1e6)  # the catalogue's price
    shell = (await sync_to_async(event_data)(task, "tool.result"))[0]["output"]
    assert shell == "exit_code: 0\n0\n"  # the sandbox never sees the key
    await stop_sandbox(session)

    missing = await sync_to_async(make_agent)(
        "nokey", model={"base_url": llm.base_url, "name": "m", "credential": "absent"}
    )
    task, _ = await start(owner, missing, "hi")
    executor.kick()
    task = await wait_terminal(task)
    assert (task.status, task.error["code"]) == ("failed", "credential_not_found")


def _shared_team_run(owner: Any, base_url: str) -> tuple[Any, Any]:
    """A team of ``owner`` (admin: stores the key) and a member who writes an llm agent there
    and runs it in a session of the team; the member's personal team holds a key of the same
    name, which must not be used."""
    from accounts.services import team_create
    from providers.services import credential_create
    from tests.factories import add_member, make_user

    team = team_create(user=owner, name="Shared", slug="shared")
    member = make_user("team-member")
    add_member(team, member, "member")
    credential_create(
        owner=owner, team=team, name="main", provider="openai", secret="sk-team-0123456789ab"
    )
    credential_create(owner=member, name="main", provider="openai", secret="sk-own-0123456789ab")
    spec = {"model": {"base_url": base_url, "name": "scripted-1", "credential": "main"},
            "max_retries": 0}  # fmt: skip
    agent = agent_create(owner=member, team=team, slug="writer", name="w", kind="llm", spec=spec)
    session = session_create(owner=member, team=team, agent=agent)
    return member, session


async def test_an_llm_agent_of_a_shared_team_uses_the_teams_credential(
    executor: Any, llm: ScriptedLLM, owner: Any
) -> None:
    member, session = await sync_to_async(_shared_team_run)(owner, llm.base_url)
    llm.add(Turn(chunks=["ok"]))
    task, _ = await start(member, session.agent, "hi", session)
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    assert {h["authorization"] for h in llm.headers} == {"Bearer sk-team-0123456789ab"}


async def test_the_keyless_demo_agent(executor: Any, owner: Any) -> None:
    from sessions.demo import seed_demo_agents

    agents = await sync_to_async(seed_demo_agents)(owner=owner)
    demo = next(a for a in agents if a.slug == "demo-llm")
    task, session = await start(owner, demo, "$ echo hi from the sandbox")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    assert "hi from the sandbox" in task.result["text"] and "scripted demo" in task.result["text"]
    assert len(await sync_to_async(event_data)(task, "message.delta")) > 3  # streamed word by word

    task, _ = await start(owner, demo, "hello", session)
    executor.kick()
    task = await wait_terminal(task)
    assert task.result["text"].startswith("(scripted demo) You said: “hello”.")
    await stop_sandbox(session)


async def test_cancelling_stops_a_running_tool(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any
) -> None:
    import asyncio
    import subprocess
    import time

    agent = await sync_to_async(make_agent)(tools=["shell"])
    llm.add(Turn(tool_calls=[call("shell", command="sleep 6071", timeout_s=300)]))
    task, session = await start(owner, agent, "Sleep.")
    executor.kick()
    deadline = time.monotonic() + 20
    while subprocess.run(["pgrep", "-f", "sleep 6071"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "the tool never started"
        await asyncio.sleep(0.05)
    await sync_to_async(task_cancel)(task=task)
    task = await wait_terminal(task, timeout=20)
    assert task.status == "cancelled"
    result = (await sync_to_async(event_data)(task, "tool.result"))[0]
    assert result["output"].startswith("error: cancelled")
    assert subprocess.run(["pgrep", "-f", "sleep 6071"], capture_output=True).returncode == 1
    await stop_sandbox(session)


# A dependency-free MCP stdio server (the sandbox's Python has no mcp package): JSON-RPC lines.
STDIO_SERVER = r"""
import json, socket, sys
TOOLS = [{"name": "shout", "description": "Upper-case a text.",
          "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                          "required": ["text"]}},
         {"name": "where", "description": "The host name.", "inputSchema": {"type": "object"}}]
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue  # a notification
    method, params = msg["method"], msg.get("params") or {}
    if method == "initialize":
        result = {"protocolVersion": params["protocolVersion"], "capabilities": {"tools": {}},
                  "serverInfo": {"name": "stdio-fixture", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        args = params.get("arguments") or {}
        text = args["text"].upper() if params["name"] == "shout" else socket.gethostname()
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    else:
        result = {}
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
"""


async def test_a_stdio_mcp_server_runs_inside_the_sandbox(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any
) -> None:
    import subprocess

    agent = await sync_to_async(make_agent)(
        mcp_servers=[{"name": "local", "command": ["python3", "/workspace/mcp_stdio_fixture.py"]}]
    )
    session = await sync_to_async(session_create)(owner=owner, agent=agent)
    (session.workspace_path / "mcp_stdio_fixture.py").write_text(STDIO_SERVER)
    llm.add(
        Turn(tool_calls=[call("local__shout", text="hi"), call("local__where")]),
        Turn(chunks=["done"]),
    )
    task, _ = await start(owner, agent, "Shout.", session)
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    offered = sorted(t["function"]["name"] for t in llm.requests[0]["tools"])
    assert offered == ["local__shout", "local__where"]
    outputs = {r["name"]: r["output"] for r in await sync_to_async(event_data)(task, "tool.result")}
    assert outputs == {"local__shout": "HI", "local__where": "sandbox"}  # the sandbox's hostname
    running = subprocess.run(["pgrep", "-f", "mcp_stdio_fixture"], capture_output=True)
    assert running.returncode == 1  # stopped with the run
    await stop_sandbox(session)


async def test_an_anthropic_agent_runs_the_same_loop(
    executor: Any, llm: ScriptedLLM, owner: Any, make_agent: Any
) -> None:
    agent = await sync_to_async(make_agent)(
        model={"provider": "anthropic", "base_url": llm.anthropic_base_url, "name": "claude-x"},
        system_prompt="Be brief.", tools=["write_file"],
    )  # fmt: skip
    llm.add(
        Turn(chunks=["Writing."], tool_calls=[call("write_file", path="a.txt", content="A")]),
        Turn(chunks=["Wr", "ote it."]),
    )
    task, session = await start(owner, agent, "Write a.txt.")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    assert (
        task.result["text"] == "Wrote it." and (session.workspace_path / "a.txt").read_text() == "A"
    )
    second = llm.requests[1]
    assert second["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    result_block = second["messages"][-1]["content"][0]
    assert (result_block["type"], result_block["content"]) == (
        "tool_result",
        "wrote 1 bytes to a.txt",
    )
    assert task.usage["prompt_tokens"] == 14 and task.usage["completion_tokens"] == 10
    await stop_sandbox(session)

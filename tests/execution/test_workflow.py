"""The ``workflow`` kind: spec validation through the API (field-precise errors), and graphs
run end to end: a condition, a loop, code in the real sandbox, an HTTP request to a local
server and a model call to the scripted OpenAI-compatible server, with the step trace."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from runtime_project.exceptions import InvalidInput
from sessions.runners.scripted_llm import ScriptedLLM, Turn
from sessions.runners.workflow import expr
from sessions.services.agents import agent_create
from sessions.services.sessions import session_create
from sessions.services.tasks import task_cancel, task_create
from tests.api.helpers import API, error_of
from tests.helpers import event_data, events_of, wait_terminal

SQUARE = "import json, sys\nd = json.load(sys.stdin)\nprint(json.dumps({'square': d['item'] ** 2}))"


def _agent(client: Any, spec: dict[str, Any]) -> Any:
    body = {"slug": "wf", "name": "wf", "kind": "workflow", "spec": spec}
    return client.post(f"{API}/agents", body, format="json")


def _fields(client: Any, spec: dict[str, Any]) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = error_of(_agent(client, spec), 400, "invalid_input")["details"][
        "fields"
    ]
    return fields


MINIMAL = {
    "components": [{"id": "in", "type": "input"}, {"id": "out", "type": "output"}],
    "edges": [{"from": "in.x", "to": "out.x"}],
}


@pytest.mark.django_db
def test_a_valid_workflow_is_saved(api_client: Any) -> None:
    response = _agent(api_client, MINIMAL)
    assert response.status_code == 201, response.json()
    assert response.json()["kind"] == "workflow"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("components", "edges", "field", "words"),
    [
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "in", "type": "output"}], [],
            "spec.components[1].id", "duplicate id 'in'", id="duplicate-id",
        ),
        pytest.param(
            [{"id": "x", "type": "teleport"}, {"id": "out", "type": "output"}],
            [{"from": "x", "to": "out.v"}],
            "spec.components[0].type", "unknown component type 'teleport'", id="unknown-type",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "h", "type": "http_request"},
             {"id": "out", "type": "output"}],
            [{"from": "in", "to": "h.x"}, {"from": "h", "to": "out.v"}],
            "spec.components[1].url", "'url' is a required property", id="missing-config",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "out", "type": "output"}],
            [{"from": "nowhere.x", "to": "out.v"}],
            "spec.edges[0].from", "unknown component 'nowhere'", id="edge-from-unknown",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "out", "type": "output"}],
            [{"from": "in", "to": "ghost.v"}, {"from": "in", "to": "out.v"}],
            "spec.edges[0].to", "unknown component 'ghost'", id="edge-to-unknown",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "out", "type": "output"}],
            [{"from": "in", "to": "out"}],
            "spec.edges[0].to", "name the input", id="edge-without-input",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "c", "type": "condition",
             "expression": "x > 1"}, {"id": "out", "type": "output"}],
            [{"from": "in.x", "to": "c.x"}, {"from": "c.maybe", "to": "out.v"}],
            "spec.edges[1].from", "has no output 'maybe'", id="unknown-output",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "h", "type": "http_request",
             "url": "https://example.com/{{city}}"}, {"id": "out", "type": "output"}],
            [{"from": "h", "to": "out.v"}],
            "spec.components[1].url", "input 'city' of 'h' has no incoming edge",
            id="missing-input",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "e", "type": "emit",
             "data": {"progress": {"done": "{{done}}"}}}, {"id": "out", "type": "output"}],
            [{"from": "in.x", "to": "e.x"}, {"from": "e", "to": "out.v"}],
            "spec.components[1].data", "input 'done' of 'e' has no incoming edge",
            id="emit-missing-input",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "e", "type": "emit", "data": 3},
             {"id": "out", "type": "output"}],
            [{"from": "in", "to": "e.x"}, {"from": "e", "to": "out.v"}],
            "spec.components[1].data", "is not of type 'object', 'string'", id="emit-data-type",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "c", "type": "condition",
             "expression": "__import__('os').system('id')"}, {"id": "out", "type": "output"}],
            [{"from": "in", "to": "c.x"}, {"from": "c", "to": "out.v"}],
            "spec.components[1].expression", "only these functions", id="unsafe-expression",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "a", "type": "code", "source": "print(1)"},
             {"id": "b", "type": "code", "source": "print(2)"}, {"id": "out", "type": "output"}],
            [{"from": "in", "to": "a.x"}, {"from": "a", "to": "b.x"}, {"from": "b", "to": "a.y"},
             {"from": "b", "to": "out.v"}],
            "spec.edges[2]", "closes a cycle: a → b → a", id="cycle",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}], [],
            "spec.components", "exactly one output component", id="no-output",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "p", "type": "llm_prompt", "prompt": "hi"},
             {"id": "out", "type": "output"}],
            [{"from": "p", "to": "out.v"}],
            "spec.components[1].model", "needs a model", id="llm-without-model",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "l", "type": "loop", "body": {
                "components": [{"id": "i", "type": "input"},
                               {"id": "c", "type": "code", "source": "x", "timeout_s": -1},
                               {"id": "o", "type": "output"}],
                "edges": [{"from": "i.item", "to": "c.item"}, {"from": "c", "to": "o.v"},
                          {"from": "c", "to": "zzz.v"}]}},
             {"id": "out", "type": "output"}],
            [{"from": "in.list", "to": "l.items"}, {"from": "l.results", "to": "out.v"}],
            "spec.components[1].body.components[1].timeout_s", "less than or equal to the minimum",
            id="inside-a-loop",
        ),
        pytest.param(
            [{"id": "in", "type": "input"}, {"id": "l", "type": "loop",
             "component": {"type": "code", "source": "print(1)"}},
             {"id": "out", "type": "output"}],
            [{"from": "l.results", "to": "out.v"}],
            "spec.components[1].items", "input 'items' of 'l' has no incoming edge",
            id="loop-without-items",
        ),
    ],
)  # fmt: skip
def test_graph_errors_name_the_field(
    api_client: Any, components: list[Any], edges: list[Any], field: str, words: str
) -> None:
    fields = _fields(api_client, {"components": components, "edges": edges})
    assert field in fields, fields
    assert any(words in message for message in fields[field]), fields[field]


@pytest.mark.django_db
def test_every_problem_is_reported_at_once(api_client: Any) -> None:
    spec = {
        "components": [{"id": "in", "type": "input"}, {"id": "bad id", "type": "code"}],
        "edges": [{"from": "in", "to": "nope.x"}, {"from": "in"}],
        "extra": True,
    }
    fields = _fields(api_client, spec)
    assert {"spec.components[1].id", "spec.edges[1].to", "spec.extra"} <= set(fields), fields
    # Graph problems are all reported together as well.
    fields = _fields(api_client, {**MINIMAL, "edges": [{"from": "in.x", "to": "nope.x"}]})
    assert set(fields) == {"spec.edges[0].to", "spec.components[1]"}, fields


def test_the_expression_language_is_small_and_safe() -> None:
    env = {"n": 3, "user": {"name": "Ada", "tags": ["x"]}, "s": "Hi"}
    assert expr.evaluate("n > 2 and user.name == 'Ada' and 'x' in user.tags", env) is True
    assert expr.evaluate("len(s) * 2 if not missing else 0", env) == 4
    assert expr.evaluate("lower(s) != 'hi' or n % 2 == 1", env) is True
    for bad in ("().__class__", "open('/etc/passwd')", "[x for x in s]", "lambda: 1", "n ** 9"):
        with pytest.raises(expr.ExpressionError):
            expr.evaluate(bad, env)
    with pytest.raises(expr.ExpressionError, match="grew past"):
        expr.evaluate("'a' * 1000000000", env)
    with pytest.raises(expr.ExpressionError, match="ZeroDivisionError"):
        expr.evaluate("n / 0", env)


class _Facts(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body,
                                    "token": self.headers.get("X-Token")})  # fmt: skip
        status = 500 if self.path.startswith("/broken") else 200
        payload = json.dumps({"fact": f"{body['topic']} purr", "count": len(body["numbers"])})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def facts(settings: Any) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server (base URL, the requests it got); loopback allowed for the test."""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    handler = type("Facts", (_Facts,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    server.shutdown()
    server.server_close()


def _spec(base_url: str, model_url: str) -> dict[str, Any]:
    """Branch on the mode; on ``full``: square every item in the sandbox (a loop of code
    steps) while the facts server is asked about the topic (concurrently), then a model
    summarises both. ``short`` is the untaken branch; its edge into ``out.answer`` merges."""
    return {
        "model": {"base_url": model_url, "name": "scripted-1"},
        "components": [
            {"id": "in", "type": "input"},
            {"id": "check", "type": "condition",
             "expression": "mode == 'full' and len(value) > 0"},
            {"id": "each", "type": "loop", "body": {
                "components": [
                    {"id": "it", "type": "input"},
                    {"id": "sq", "type": "code", "source": SQUARE},
                    {"id": "done", "type": "output"},
                ],
                "edges": [{"from": "it.item", "to": "sq.item"},
                          {"from": "sq.square", "to": "done.square"}],
            }},
            {"id": "short", "type": "code", "language": "shell",
             "source": "echo '{\"answer\": \"nothing to do\"}'"},
            {"id": "total", "type": "code", "source":
             "import json, sys\nr = json.load(sys.stdin)['results']\n"
             "print('working'); print(json.dumps([x['square'] for x in r]))"},
            {"id": "fetch", "type": "http_request", "method": "POST",
             "url": base_url + "/facts/{{topic}}", "headers": {"X-Token": "t-{{topic}}"},
             "body": {"topic": "{{topic}}", "numbers": "{{value}}"}},
            {"id": "ask", "type": "llm_prompt", "system": "Be brief.",
             "prompt": "Fact: {{fact}}. Squares: {{squares}}. Summarise."},
            {"id": "out", "type": "output"},
        ],
        "edges": [
            {"from": "in.mode", "to": "check.mode"},
            {"from": "in.items", "to": "check.value"},
            {"from": "check.true", "to": "each.items"},
            {"from": "check.false", "to": "short.why"},
            {"from": "each.results", "to": "total.results"},
            {"from": "in.topic", "to": "fetch.topic"},
            {"from": "in.items", "to": "fetch.value"},
            {"from": "fetch.json", "to": "ask.fact"},
            {"from": "total", "to": "ask.squares"},
            {"from": "ask.text", "to": "out.answer"},
            {"from": "short.answer", "to": "out.answer"},
            {"from": "total", "to": "out.squares"},
            {"from": "fetch.status", "to": "out.status"},
        ],
    }  # fmt: skip


@pytest.fixture
def run_workflow(owner: Any) -> Any:
    """``run_workflow(spec, input) -> task`` (queued; kick the executor)."""

    def make(spec: dict[str, Any], data: dict[str, Any], **agent: Any) -> Any:
        agent = agent_create(owner=owner, slug=f"wf-{time.monotonic_ns()}", name="wf",
                             kind="workflow", spec=spec, **agent)  # fmt: skip
        session = session_create(owner=owner, agent=agent)
        task, _ = task_create(session=session, user=owner, input=data)
        return task

    return make


def _trace(task: Any) -> list[tuple[str, str, str]]:
    from tests.helpers import events_of

    return [
        (e.type.removeprefix("step."), e.data["step_id"], e.data.get("status", ""))
        for e in events_of(task) if e.type in ("step.started", "step.finished")
    ]  # fmt: skip


async def _stop(task: Any) -> None:
    from sandboxes.registry import get_backend

    await get_backend().stop(str(task.session.uuid))


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox
async def test_branch_loop_code_http_and_llm_run_with_a_step_trace(
    executor: Any, llm: ScriptedLLM, facts: Any, run_workflow: Any
) -> None:
    base_url, requests = facts
    llm.add(Turn(chunks=["Cats purr; ", "squares 1, 4, 9."]))
    spec = _spec(base_url, llm.base_url)
    task = await sync_to_async(run_workflow)(
        spec, {"mode": "full", "items": [1, 2, 3], "topic": "cats"},
        input_schema={"type": "object", "required": ["mode", "items", "topic"]},
    )  # fmt: skip
    executor.kick()
    task = await wait_terminal(task, timeout=120)
    assert task.status == "succeeded", task.error
    assert task.result == {"answer": "Cats purr; squares 1, 4, 9.", "squares": [1, 4, 9],
                           "status": 200}  # fmt: skip
    assert task.usage["steps"] == 16 and task.usage["prompt_tokens"] == 7

    # The HTTP step went to the local server with the rendered URL, headers and JSON body.
    assert requests == [{"path": "/facts/cats", "token": "t-cats",
                         "body": {"topic": "cats", "numbers": [1, 2, 3]}}]  # fmt: skip
    # The model saw the rendered prompt.
    assert llm.requests[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": 'Fact: {"fact": "cats purr", "count": 3}. '
         "Squares: [1, 4, 9]. Summarise."},
    ]  # fmt: skip

    trace = await sync_to_async(_trace)(task)
    finished = {step: status for kind, step, status in trace if kind == "finished"}
    assert finished == {
        "in": "succeeded", "check": "succeeded", "each": "succeeded", "short": "skipped",
        "each[0].it": "succeeded", "each[0].sq": "succeeded", "each[0].done": "succeeded",
        "each[1].it": "succeeded", "each[1].sq": "succeeded", "each[1].done": "succeeded",
        "each[2].it": "succeeded", "each[2].sq": "succeeded", "each[2].done": "succeeded",
        "total": "succeeded", "fetch": "succeeded", "ask": "succeeded", "out": "succeeded",
    }  # fmt: skip
    started = [step for kind, step, _ in trace if kind == "started"]
    assert "short" not in started  # a skipped step never starts
    assert set(started) == set(finished) - {"short"}
    position = {entry: i for i, entry in enumerate(trace)}

    def before(first: str, then: str) -> bool:
        return position[("finished", first, finished[first])] < position[("started", then, "")]

    assert before("in", "check") and before("check", "each") and before("each", "total")
    assert before("each[0].done", "each[1].it") and before("each[1].done", "each[2].it")
    assert before("total", "ask") and before("fetch", "ask") and before("ask", "out")
    assert trace[0] == ("started", "in", "") and trace[-1] == ("finished", "out", "succeeded")
    # The HTTP step ran beside the loop (independent branches run concurrently).
    assert position[("started", "fetch", "")] < position[("finished", "each", "succeeded")]

    events = {e["step_id"]: e for e in await sync_to_async(event_data)(task, "step.finished")}
    assert events["each[1].sq"]["output"] == {"square": 4}
    assert events["each[1].sq"]["parent"] == "each" and events["each[1].sq"]["iteration"] == 1
    assert events["total"]["output"] == [1, 4, 9]
    assert events["check"]["output"] == {"result": True, "value": [1, 2, 3]}
    assert events["fetch"]["output"]["json"] == {"fact": "cats purr", "count": 3}
    assert isinstance(events["ask"]["duration_ms"], int)
    first = await sync_to_async(event_data)(task, "step.started")
    assert first[0] == {"step_id": "in", "component": "in", "type": "input",
                        "input": {"mode": "full", "items": [1, 2, 3], "topic": "cats"}}  # fmt: skip

    # The other branch: the condition is false, the loop and everything after it is skipped,
    # and the merge into out.answer takes the short answer.
    task = await sync_to_async(run_workflow)(spec, {"mode": "quick", "items": [], "topic": "dogs"})
    executor.kick()
    task = await wait_terminal(task, timeout=120)
    assert task.status == "succeeded", task.error
    assert task.result == {"answer": "nothing to do", "status": 200}
    finished = {s: st for kind, s, st in await sync_to_async(_trace)(task) if kind == "finished"}
    assert {s for s, st in finished.items() if st == "skipped"} == {"each", "total", "ask"}
    assert finished["short"] == "succeeded" and len(llm.requests) == 1
    await _stop(task)


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox
async def test_a_failing_component_fails_the_task(
    executor: Any, facts: Any, run_workflow: Any
) -> None:
    base_url, _ = facts
    spec = {
        "components": [
            {"id": "in", "type": "input"},
            {"id": "each", "type": "loop", "component": {
                "type": "code", "language": "shell",
                "source": 'test "$INPUT_ITEM" != 2 || { echo boom >&2; exit 3; }; echo ok'}},
            {"id": "out", "type": "output"},
        ],
        "edges": [{"from": "in.items", "to": "each.items"},
                  {"from": "each.results", "to": "out.v"}],
    }  # fmt: skip
    task = await sync_to_async(run_workflow)(spec, {"items": [1, 2, 3]})
    executor.kick()
    task = await wait_terminal(task, timeout=120)
    assert task.status == "failed"
    assert task.error["code"] == "component_failed"
    assert task.error["details"]["component"] == "each"
    log = [(e.type, e.data) for e in await sync_to_async(events_of)(task)]
    assert task.error["details"]["step_id"] == "each[1]", (task.error, log)
    assert task.error["details"]["exit_code"] == 3, (task.error, log)
    assert "boom" in task.error["details"]["stderr"]
    assert "'each' (code) failed" in task.error["message"]
    trace = await sync_to_async(_trace)(task)
    assert ("finished", "each[0]", "succeeded") in trace
    assert ("finished", "each[1]", "failed") in trace
    assert ("finished", "each", "failed") in trace
    assert not any(step in ("each[2]", "out") for _, step, _ in trace)

    # An HTTP error status fails the request component, naming it.
    spec = {
        "components": [{"id": "in", "type": "input"},
                       {"id": "call", "type": "http_request", "method": "POST",
                        "url": base_url + "/broken", "body": {"topic": "x", "numbers": []}},
                       {"id": "out", "type": "output"}],
        "edges": [{"from": "in", "to": "call.x"}, {"from": "call.status", "to": "out.v"}],
    }  # fmt: skip
    task = await sync_to_async(run_workflow)(spec, {})
    executor.kick()
    task = await wait_terminal(task, timeout=60)
    assert (task.status, task.error["code"]) == ("failed", "component_failed")
    assert task.error["details"]["component"] == "call" and task.error["details"]["status"] == 500
    await _stop(task)


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox
async def test_input_schema_and_cancellation(executor: Any, run_workflow: Any, owner: Any) -> None:
    spec = {
        "components": [
            {"id": "in", "type": "input"},
            {"id": "nap", "type": "code", "language": "shell", "source": "sleep 60"},
            {"id": "out", "type": "output"},
        ],
        "edges": [{"from": "in", "to": "nap.x"}, {"from": "nap", "to": "out.v"}],
    }  # fmt: skip
    with pytest.raises(InvalidInput):
        await sync_to_async(run_workflow)(
            spec, {"n": "one"}, input_schema={"properties": {"n": {"type": "integer"}}}
        )
    task = await sync_to_async(run_workflow)(spec, {})
    executor.kick()
    deadline = time.monotonic() + 60
    while not await sync_to_async(event_data)(task, "process.started"):
        assert time.monotonic() < deadline, "the code step did not start"
        await asyncio.sleep(0.05)
    began = time.monotonic()
    await sync_to_async(task_cancel)(task=task)
    task = await wait_terminal(task, timeout=30)
    assert task.status == "cancelled" and time.monotonic() - began < 15
    trace = await sync_to_async(_trace)(task)
    assert ("finished", "nap", "cancelled") in trace
    await _stop(task)


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox
async def test_agent_call_runs_a_child_task_and_loops_run_concurrently(
    executor: Any, run_workflow: Any, owner: Any
) -> None:
    from sessions.models import Task

    await sync_to_async(agent_create)(owner=owner, slug="child", name="child", kind="command",
                                      spec={})  # fmt: skip
    spec = {
        "components": [
            {"id": "in", "type": "input"},
            {"id": "call", "type": "agent_call", "agent": "child"},
            {"id": "each", "type": "loop", "concurrency": 4, "component": {
                "type": "code", "language": "shell", "source": 'echo "[$INPUT_ITEM, $INPUT_K]"'}},
            {"id": "file", "type": "code", "output_file": "res/r.json", "source":
             "import json, os, sys\nd = json.load(sys.stdin)\nos.makedirs('res', exist_ok=True)\n"
             "json.dump({'k2': d['k'] * 2}, open('res/r.json', 'w'))\nprint('not json')"},
            {"id": "out", "type": "output"},
        ],
        "edges": [
            {"from": "in.k", "to": "file.k"}, {"from": "file.k2", "to": "out.k2"},
            {"from": "in.job", "to": "call.input"},
            {"from": "in.items", "to": "each.items"}, {"from": "in.k", "to": "each.k"},
            {"from": "call.result", "to": "out.child"}, {"from": "each.results", "to": "out.rows"},
        ],
    }  # fmt: skip
    data = {"job": {"command": "echo from-child"}, "items": list(range(8)), "k": 7}
    task = await sync_to_async(run_workflow)(spec, data)
    executor.kick()
    task = await wait_terminal(task, timeout=120)
    assert task.status == "succeeded", task.error
    assert task.result["child"]["exit_code"] == 0
    assert task.result["rows"] == [[i, 7] for i in range(8)]
    assert task.result["k2"] == 14  # from output_file, not the stdout line
    child = await sync_to_async(Task.objects.get)(parent=task)
    assert child.status == "succeeded" and child.input == {"command": "echo from-child"}
    # The loop's code steps ran in the sandbox; their inputs files are gone afterwards.
    assert not list((task.session.workspace_path / ".workflow").glob("*"))
    await _stop(task)


@pytest.mark.django_db(transaction=True)
async def test_emit_streams_custom_events_without_a_sandbox(
    executor: Any, run_workflow: Any
) -> None:
    """``emit`` components send ``custom`` events (LangGraph's stream writer), in order, from
    a loop too; a graph with no code component runs in the executor, no sandbox started. Data
    that does not render to an object fails the component."""
    spec = {
        "components": [
            {"id": "in", "type": "input"},
            {"id": "hello", "type": "emit", "data": {"stage": "start", "of": "{{n}}"}},
            {"id": "each", "type": "loop",
             "component": {"type": "emit", "data": {"i": "{{index}}", "item": "{{item}}"}}},
            {"id": "out", "type": "output"},
        ],
        "edges": [{"from": "in.n", "to": "hello.n"}, {"from": "in.items", "to": "each.items"},
                  {"from": "hello", "to": "each.after"}, {"from": "each.results", "to": "out.v"}],
    }  # fmt: skip
    task = await sync_to_async(run_workflow)(spec, {"n": 3, "items": ["a", {"b": 2}, None]})
    executor.kick()
    task = await wait_terminal(task, timeout=60)
    assert task.status == "succeeded", task.error
    events = await sync_to_async(events_of)(task)
    assert [e.data for e in events if e.type == "custom"] == [
        {"stage": "start", "of": 3},
        {"i": 0, "item": "a"}, {"i": 1, "item": {"b": 2}}, {"i": 2, "item": None},
    ]  # fmt: skip
    assert task.result["v"][1] == {"i": 1, "item": {"b": 2}}
    assert not [e for e in events if e.type.startswith("sandbox.")]

    spec = {
        "components": [{"id": "in", "type": "input"},
                       {"id": "e", "type": "emit", "data": "{{n}}"},
                       {"id": "out", "type": "output"}],
        "edges": [{"from": "in.n", "to": "e.n"}, {"from": "e", "to": "out.v"}],
    }  # fmt: skip
    task = await sync_to_async(run_workflow)(spec, {"n": 3})
    executor.kick()
    task = await wait_terminal(task, timeout=60)
    assert (task.status, task.error["code"]) == ("failed", "component_failed")
    assert "data is int, not an object" in task.error["message"]

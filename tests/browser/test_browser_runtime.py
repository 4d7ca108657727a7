"""The browser runtime end to end (docs/browser-runtime.md): a signed-in Chromium opens
``/console/sessions/<id>/runtime/``, loads Pyodide from this server, attaches to the session over
``/ws/runtimes/`` and runs the session's ``remote`` tasks, which clients create and read over
REST as for any other agent."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.browser.conftest import (
    PYODIDE,
    DaphneServer,
    RuntimePage,
    open_runtime,
    require,
    task_events,
    wait_for_task,
)

pytestmark = [pytest.mark.browser, pytest.mark.transport]


def _remote_session(http: httpx.Client, slug: str = "in-browser") -> str:
    agent = http.post(
        "/api/v1/agents",
        json={
            "slug": slug,
            "name": "Python in the browser",
            "kind": "remote",
            "spec": {"runtime_kind": "python", "attach_timeout_s": 30},
        },
    )
    assert agent.status_code == 201, agent.text
    session = http.post("/api/v1/sessions", json={"agent": slug, "name": "browser"})
    assert session.status_code == 201, session.text
    return str(session.json()["id"])


def _run(http: httpx.Client, session_id: str, task_input: dict[str, Any]) -> dict[str, Any]:
    created = http.post(f"/api/v1/sessions/{session_id}/tasks", json={"input": task_input})
    assert created.status_code == 201, created.text
    return wait_for_task(http, created.json()["id"])


def _of(events: list[dict[str, Any]], kind: str, cell: int | None = None) -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in events
        if e["type"] == kind and (cell is None or e["data"]["cell"] == cell)
    ]


def _stdout(events: list[dict[str, Any]], cell: int, stream: str = "stdout") -> str:
    return "".join(d["text"] for d in _of(events, f"process.{stream}", cell))


def _only_this_server(runtime: RuntimePage, server: DaphneServer) -> None:
    ours = urlsplit(server.url).netloc
    elsewhere = [u for u in runtime.requests if urlsplit(u).netloc != ours]
    assert elsewhere == [], f"the page reached beyond the server: {elsewhere}"


REPORT = (
    "class Report:\n"
    "    def __repr__(self):\n"
    "        return 'Report()'\n"
    "    def _repr_html_(self):\n"
    "        return '<b>report</b>'\n"
    "display(Report())\n"
    "print('after display', file=sys.stderr)"
)


def test_python_tasks_run_in_the_page(
    browser_context: Any, daphne_server: DaphneServer, http: httpx.Client
) -> None:
    session_id = _remote_session(http)
    runtime = open_runtime(browser_context, daphne_server, session_id)
    runtime.wait_for_state("attached")
    runtime_id = runtime.page.text_content("#runtime-id")
    assert runtime_id and runtime_id.startswith("browser-")

    # Output, a result, a rich display.
    task = _run(
        http,
        session_id,
        {
            "cells": [
                "import sys\nvalue = 6 * 7\nprint('hello from', sys.platform)",
                "value",
                REPORT,
            ]
        },
    )
    assert task["status"] == "succeeded", task
    assert task["result"] == {
        "cells": [
            {"cell": 0, "status": "ok", "execution_count": 1},
            {"cell": 1, "status": "ok", "execution_count": 2},
            {"cell": 2, "status": "ok", "execution_count": 3},
        ],
        "execution_count": 3,
        "output": {"text/plain": "42"},
    }
    events = task_events(http, task["id"])
    (started,) = _of(events, "kernel.started")  # the page's interpreter is new to the session
    assert started["started"] == 1 and started["duration_ms"] > 0
    assert [d["cell"] for d in _of(events, "cell.started")] == [0, 1, 2]
    assert _of(events, "cell.started", 0)[0]["code"].startswith("import sys")
    assert {d["language"] for d in _of(events, "cell.started")} == {"python"}
    assert _stdout(events, 0) == "hello from emscripten\n"
    assert _stdout(events, 2, "stderr") == "after display\n"
    displays = _of(events, "output.display")
    assert displays == [
        {
            "cell": 1,
            "output_type": "execute_result",
            "data": {"text/plain": "42"},
            "metadata": {},
            "execution_count": 2,
            "display_id": None,
        },
        {
            "cell": 2,
            "output_type": "display_data",
            "data": {"text/plain": "Report()", "text/html": "<b>report</b>"},
            "metadata": {},
            "execution_count": None,
            "display_id": None,
        },
    ]
    finished = _of(events, "cell.finished")
    assert [(d["cell"], d["status"], d["execution_count"]) for d in finished] == [
        (0, "ok", 1),
        (1, "ok", 2),
        (2, "ok", 3),
    ]
    assert all(isinstance(d["duration_ms"], int) for d in finished)
    # The page shows what it ran, as text (the HTML is listed, never rendered).
    log = runtime.page.text_content("#log") or ""
    assert "hello from emscripten" in log and "[text/html]" in log
    assert runtime.page.locator("#log b").count() == 0

    # The interpreter lives on: the next task sees `value`.
    task = _run(http, session_id, {"code": "value + 1"})
    assert task["status"] == "succeeded", task
    assert task["result"]["output"] == {"text/plain": "43"}
    assert task["result"]["execution_count"] == 4

    # A failing cell stops the task; the cells after it never run.
    task = _run(http, session_id, {"cells": ["print('first')", "undefined_name", "print('never')"]})
    assert task["status"] == "failed"
    assert task["error"] == {
        "code": "cell_error",
        "message": "Cell 1 raised NameError: name 'undefined_name' is not defined",
        "details": {
            "cell": 1,
            "ename": "NameError",
            "evalue": "name 'undefined_name' is not defined",
        },
    }
    events = task_events(http, task["id"])
    assert [d["cell"] for d in _of(events, "cell.started")] == [0, 1]
    (error,) = _of(events, "output.error", 1)
    assert error["ename"] == "NameError"
    assert any("undefined_name" in line for line in error["traceback"])
    assert [d["status"] for d in _of(events, "cell.finished")] == ["ok", "error"]

    # allow_errors goes on; a notebook is not for the browser.
    task = _run(http, session_id, {"cells": ["1 / 0", "'still here'"], "allow_errors": True})
    assert task["status"] == "succeeded", task
    assert [c["status"] for c in task["result"]["cells"]] == ["error", "ok"]
    assert task["result"]["output"] == {"text/plain": "'still here'"}
    assert _of(task_events(http, task["id"]), "kernel.started") == []
    # The workspace, its database and the agent's model are on the server, out of reach.
    task = _run(http, session_id, {"notebook": "analysis.ipynb"})
    assert task["status"] == "failed" and task["error"]["code"] == "unsupported"
    task = _run(http, session_id, {"cells": ["1", {"sql": "SELECT 1"}]})
    assert task["status"] == "failed" and task["error"]["code"] == "unsupported"
    assert task["error"]["details"] == {"cell": 1, "language": "sql", "runtime": "pyodide"}
    task = _run(http, session_id, {"cells": [{"ai": "Explain this"}]})
    assert task["error"]["code"] == "unsupported"
    task = _run(http, session_id, {"cells": [42]})
    assert task["status"] == "failed" and task["error"]["code"] == "invalid_input"

    _cancel_interrupts_the_running_cell(runtime, http, session_id)
    _reconnects_and_resumes_the_running_task(runtime, http, session_id)
    _user_code_cannot_use_the_page_users_credentials(runtime, session_id)

    # restart: true starts from a fresh namespace and count.
    task = _run(http, session_id, {"code": "'value' in globals()", "restart": True})
    assert task["status"] == "succeeded", task
    assert task["result"]["output"] == {"text/plain": "False"}
    assert task["result"]["execution_count"] == 1
    assert _of(task_events(http, task["id"]), "kernel.restarted") == [{"reason": "requested"}]
    _only_this_server(runtime, daphne_server)
    assert any(u.endswith("/static/vendor/pyodide/pyodide.asm.wasm") for u in runtime.requests)


def _cancel_interrupts_the_running_cell(
    runtime: RuntimePage, http: httpx.Client, session_id: str
) -> None:
    assert runtime.page.text_content("#interrupts") == "interrupts the running cell"

    created = http.post(
        f"/api/v1/sessions/{session_id}/tasks",
        json={"input": {"cells": ["kept = 'yes'", "while True:\n    pass", "print('never')"]}},
    ).json()
    looping = f"[data-task-id='{created['id']}'] [data-cell='1']"  # cell 1 started
    runtime.page.wait_for_selector(looping, timeout=30_000)
    assert http.post(f"/api/v1/tasks/{created['id']}/cancel").status_code in (200, 202)
    task = wait_for_task(http, created["id"])
    assert task["status"] == "cancelled", task
    events = task_events(http, task["id"])
    assert [(d["cell"], d["status"]) for d in _of(events, "cell.finished")] == [
        (0, "ok"),
        (1, "aborted"),
    ]
    assert _of(events, "output.error", 1)[0]["ename"] == "KeyboardInterrupt"

    # Interrupted, not lost: the interpreter and its variables are still there.
    task = _run(http, session_id, {"code": "kept"})
    assert task["status"] == "succeeded", task
    assert task["result"]["output"] == {"text/plain": "'yes'"}
    assert runtime.page.text_content("#status") == "Attached"


def _reconnects_and_resumes_the_running_task(
    runtime: RuntimePage, http: httpx.Client, session_id: str
) -> None:
    sockets = sum(u.endswith("/ws/runtimes/") for u in runtime.requests)
    busy = "import time\nstart = time.time()\nwhile time.time() - start < 2:\n    pass"
    created = http.post(
        f"/api/v1/sessions/{session_id}/tasks",
        json={"input": {"cells": [busy, "print('after the gap')\n'resumed'"]}},
    ).json()
    runtime.page.wait_for_selector(f"[data-task-id='{created['id']}'] [data-cell='0']")
    runtime.page.evaluate("() => browserRuntime.ws.close()")  # the network drops
    task = wait_for_task(http, created["id"])
    assert task["status"] == "succeeded", task
    assert task["result"]["output"] == {"text/plain": "'resumed'"}
    events = task_events(http, task["id"])
    assert _stdout(events, 1) == "after the gap\n"
    assert [d["cell"] for d in _of(events, "cell.finished")] == [0, 1]
    runtime.wait_for_state("attached")  # (Playwright reports events during its own calls)
    assert sum(u.endswith("/ws/runtimes/") for u in runtime.requests) == sockets + 1


def test_a_newer_runtime_displaces_the_page(
    browser_context: Any, daphne_server: DaphneServer, http: httpx.Client, api_token: str
) -> None:
    """One runtime per session: another one registering (here a plain WebSocket client with an
    API key) takes over, and the page says so and stays down."""
    session_id = _remote_session(http)
    runtime = open_runtime(browser_context, daphne_server, session_id)
    runtime.wait_for_state("attached")
    page_runtime_id = runtime.page.text_content("#runtime-id")
    with connect(
        f"{daphne_server.ws_url}/ws/runtimes/",
        additional_headers={"Authorization": f"Bearer {api_token}"},
        subprotocols=[Subprotocol("agent-runtime.runtime.v1")],
    ) as ws:
        ws.send(
            json.dumps(
                {
                    "type": "runtime.register",
                    "runtime_id": "newer-runtime",
                    "session_id": session_id,
                    "kinds": ["python"],
                    "capabilities": {"can_execute_code": True},
                    "resume": [],
                }
            )
        )
        registered = json.loads(ws.recv(timeout=30))
        assert registered["type"] == "runtime.registered", registered
        assert registered["displaced"] == page_runtime_id
        runtime.wait_for_state("displaced", timeout_ms=30_000)
        assert "newer-runtime" in runtime.status()[1]
        runtime.page.wait_for_timeout(2000)  # no reconnecting: it would displace the newer one
        assert runtime.status()[0] == "displaced"
        with pytest.raises(TimeoutError):  # … nor was the newer runtime displaced back
            ws.recv(timeout=0.5)


def _user_code_cannot_use_the_page_users_credentials(runtime: RuntimePage, session_id: str) -> None:
    """The worker's CSP lets code fetch this server's static files only: not the API, which
    would answer to the signed-in user's cookie."""
    code = (
        "import js\n"
        "async def status(url):\n"
        "    try:\n"
        "        return (await js.fetch(url)).status\n"
        "    except Exception as exc:\n"
        "        return type(exc).__name__\n"
        "[await status('/static/runtimes/pyodide_kernel.py'), await status('/api/v1/agents'),\n"
        " await status('/api/v1/sessions/" + session_id + "')]"
    )
    result = runtime.page.evaluate("input => browserRuntime.runLocal(input)", {"code": code})
    assert result["frame"]["type"] == "task.complete", result
    assert (
        result["frame"]["result"]["output"]["text/plain"] == "[200, 'JsException', 'JsException']"
    )


def test_pyodide_files_are_served_with_the_right_types(daphne_server: DaphneServer) -> None:
    require(PYODIDE.exists(), "node_modules/pyodide is missing (npm ci, scripts/setup.sh)")
    with httpx.Client(base_url=daphne_server.url) as client:
        wasm = client.get("/static/vendor/pyodide/pyodide.asm.wasm")
        assert wasm.status_code == 200
        assert wasm.headers["content-type"] == "application/wasm"
        assert wasm.content[:4] == b"\0asm"
        assert int(wasm.headers["content-length"]) == len(wasm.content)
        module = client.get("/static/vendor/pyodide/pyodide.mjs")
        assert module.headers["content-type"].startswith("text/javascript")
        worker = client.get("/static/runtimes/pyodide-worker.js")
        assert worker.headers["cross-origin-embedder-policy"] == "require-corp"
        assert "connect-src *:*/static/" in worker.headers["content-security-policy"]
        again = client.get(
            "/static/vendor/pyodide/pyodide.mjs", headers={"If-None-Match": module.headers["etag"]}
        )
        assert again.status_code == 304
        assert client.get("/static/admin/css/base.css").status_code == 200  # the admin's too
        assert client.get("/static/vendor/pyodide/missing.js").status_code == 404

"""ChatGPT actions on a real daphne: an action call runs the agent and answers its result as
JSON; a run longer than CHATGPT_MAX_WAIT_S answers "running" and getTaskResult fetches it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integrations.endpoints.conftest import make_greeter, valid_openapi
from tests.transport.conftest import DaphneServer, live_daphne

pytestmark = [pytest.mark.transport]


@pytest.fixture
def chatgpt_daphne(transactional_db: Any, tmp_path: Path) -> Iterator[DaphneServer]:
    with live_daphne(tmp_path, CHATGPT_MAX_WAIT_S=1) as server:
        yield server


def test_an_action_call_runs_the_agent_and_answers_its_result(
    chatgpt_daphne: DaphneServer, api_user: Any, api_token: str
) -> None:
    make_greeter(api_user)
    auth = {"Authorization": f"Bearer {api_token}"}
    with httpx.Client(base_url=chatgpt_daphne.url, headers=auth, timeout=60) as http:
        doc = valid_openapi(http.get("/chatgpt/greeter/openapi.json").json())
        assert doc["servers"] == [{"url": chatgpt_daphne.url}]
        public = valid_openapi(httpx.get(f"{chatgpt_daphne.url}/chatgpt/shell/openapi.json").json())
        assert "/chatgpt/shell/run" in public["paths"]

        done = http.post("/chatgpt/greeter/greet", json={"args": ["ada"]})
        assert done.status_code == 200, (done.text, chatgpt_daphne.read_log()[-2000:])
        body = done.json()
        assert body["status"] == "succeeded" and body["text"] == "hello ada\n"
        assert body["result"]["exit_code"] == 0 and body["error"] is None
        # The public demo agent, through its built-in `run`.
        shell = http.post("/chatgpt/shell/run", json={"command": "echo $((6*7))"}).json()
        assert (shell["status"], shell["text"]) == ("succeeded", "42\n")

        # 3 s of work, 1 s of patience: "running", then getTaskResult has the answer.
        slow = http.post("/chatgpt/greeter/nap", json={"args": ["3"]}).json()
        assert slow["status"] in {"queued", "running"}, slow
        assert "getTaskResult" in slow["text"] and slow["result"] is None
        for _ in range(30):
            later = http.get(f"/chatgpt/tasks/{slow['task_id']}/result").json()
            if later["status"] == "succeeded":
                break
        assert (later["status"], later["text"]) == ("succeeded", "slept 3\n")

        failed = http.post("/chatgpt/shell/run", json={"command": "echo oops >&2; exit 3"})
        assert failed.status_code == 200 and failed.json()["status"] == "failed"
        assert failed.json()["error"]["code"] == "command_failed"

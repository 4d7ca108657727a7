"""An Alexa skill end to end over a real daphne: the binding is made through the REST API,
requests signed like Alexa's (chain served over HTTPS, our root trusted through the settings)
run a command agent in its sandbox, and the skill says what it printed; one Alexa session is
one agent session; a slow answer is kept and said when the user asks again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import factories
from tests.integrations.alexa.conftest import APP_ID, AlexaRig
from tests.transport.conftest import DaphneServer, live_daphne

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]

MAX_WAIT_S = 5
SCRIPT = r"""
case "${1:-}" in
  slow) sleep 7; echo "The slow answer is **42**.";;
  weather) printf '## Weather\nIt is **sunny** in %s.\n' "$2";;
  *) grep -o '"phrase": "[^"]*"' /workspace/.agent/task.json | cut -d'"' -f4;;
esac
"""
MAPPING = {
    "intents": {
        "WeatherIntent": {"slots": {"town": "city"}, "input": {"args": ["weather", "{city}"]}},
        "SlowIntent": {"input": {"args": ["slow"]}},
    }
}


@pytest.fixture
def server(transactional_db: Any, tmp_path: Path, alexa_rig: AlexaRig) -> Iterator[DaphneServer]:
    with live_daphne(tmp_path, ALEXA_MAX_WAIT_S=MAX_WAIT_S, **alexa_rig.env) as daphne:
        yield daphne


@pytest.fixture
def api(server: DaphneServer) -> Iterator[httpx.Client]:
    user = factories.make_user("alexa-owner")
    factories.make_agent(user, slug="weather", spec={"command": SCRIPT})
    with httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {factories.make_token(user)}"},
        timeout=30,
    ) as client:
        yield client


class Alexa:
    """Sends signed requests of the skill to the server's ``/alexa/weather``, as Alexa does."""

    def __init__(self, server: DaphneServer, rig: AlexaRig) -> None:
        self.url = f"{server.url}/alexa/weather"
        self.rig = rig

    def __call__(self, request_type: str, **fields: Any) -> dict[str, Any]:
        body, headers = self.rig.request(request_type, **fields)
        # Posted exactly as signed (the signature covers these bytes).
        response = httpx.post(self.url, content=body, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()


def _said(data: dict[str, Any]) -> str:
    return str(data["response"]["outputSpeech"]["text"])


def test_a_skill_runs_the_agent_and_says_its_answer(
    api: httpx.Client, server: DaphneServer, alexa_rig: AlexaRig
) -> None:
    ask = Alexa(server, alexa_rig)
    created = api.post(
        "/api/v1/alexa-skills",
        json={
            "name": "Weather",
            "application_id": APP_ID,
            "agent": "weather",
            "slot_mapping": MAPPING,
            "launch_speech": "Welcome to the weather agent.",
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["endpoint_url"].endswith("/alexa/" + created.json()["agent"]["id"])

    launch = ask("LaunchRequest", new=True)
    assert _said(launch) == "Welcome to the weather agent."
    assert launch["response"]["shouldEndSession"] is False

    # A slot renamed and templated into args; Markdown is not read aloud.
    weather = ask("IntentRequest", intent="WeatherIntent", slots={"town": "Paris"})
    assert _said(weather) == "Weather\nIt is sunny in Paris."
    assert weather["response"]["card"] == {
        "type": "Simple",
        "title": "Weather",
        "content": "Weather\nIt is sunny in Paris.",
    }
    assert weather["response"]["shouldEndSession"] is False
    # The default mapping: the slot "phrase" is the input key "phrase".
    echo = ask("IntentRequest", intent="EchoIntent", slots={"phrase": "hello there"})
    assert _said(echo) == "hello there"

    # Both ran in one session, tied to the Alexa session, as the skill's owner.
    sessions = api.get("/api/v1/sessions").json()["results"]
    assert len(sessions) == 1
    assert sessions[0]["metadata"]["integration"] == "alexa"
    assert sessions[0]["metadata"]["alexa"]["session_id"] == "amzn1.echo-api.session.test-1"
    tasks = api.get(f"/api/v1/sessions/{sessions[0]['id']}/tasks").json()["results"]
    assert sorted(t["input"].get("phrase", "") for t in tasks) == ["", "hello there"]
    assert {t["status"] for t in tasks} == {"succeeded"}

    # Too slow for Alexa: kept, and said when the user asks again.
    other = "amzn1.echo-api.session.test-2"
    slow = ask("IntentRequest", intent="SlowIntent", session_id=other)
    assert _said(slow).startswith("I'm still working on that.")
    assert slow["response"]["shouldEndSession"] is False
    answer = ""
    for _ in range(3):
        again = ask("IntentRequest", intent="EchoIntent", slots={"phrase": "x"}, session_id=other)
        answer = _said(again)
        if not answer.startswith("I'm still working"):
            break
    assert answer == "The slow answer is 42."
    # The pending answer was said; the next intent runs again.
    after = ask("IntentRequest", intent="EchoIntent", slots={"phrase": "next"}, session_id=other)
    assert _said(after) == "next"

    ended = ask("SessionEndedRequest", session_id=other)
    assert ended == {"version": "1.0", "response": {}}
    sessions = api.get("/api/v1/sessions").json()["results"]
    assert len(sessions) == 2
    tasks = [
        t for s in sessions for t in api.get(f"/api/v1/sessions/{s['id']}/tasks").json()["results"]
    ]
    assert len(tasks) == 4 and {t["status"] for t in tasks} == {"succeeded"}

"""``POST /alexa/{agent}`` without waiting for a run (Django's test client): built-in
requests, and every way a request is refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.test import Client

from accounts.services import team_create
from integrations.alexa.models import AlexaSkill
from sessions.models import Session, Task
from tests import factories
from tests.integrations.alexa.conftest import APP_ID, AlexaRig, make_skill


def _post(rig: AlexaRig, agent: str, request_type: str, **fields: Any) -> Any:
    body, headers = rig.request(request_type, **fields)
    return Client().post(f"/alexa/{agent}", data=body, content_type="application/json",
                         headers=headers)  # fmt: skip


def _speech(response: Any) -> str:
    assert response.status_code == 200, response.content
    return str(response.json()["response"]["outputSpeech"]["text"])


def test_launch_request_welcomes_and_keeps_the_session_open(
    alexa_settings: AlexaRig, skill: AlexaSkill
) -> None:
    response = _post(alexa_settings, "talker", "LaunchRequest", new=True)
    assert response["Content-Type"].startswith("application/json")
    data = response.json()
    assert data["version"] == "1.0"
    assert _speech(response) == "Welcome to the talker."
    assert data["response"]["shouldEndSession"] is False
    assert data["response"]["reprompt"]["outputSpeech"]["text"] == skill.help_speech
    # By uuid too.
    assert _speech(_post(alexa_settings, str(skill.agent.uuid), "LaunchRequest")) == (
        "Welcome to the talker."
    )


def test_help_stop_cancel_and_fallback(alexa_settings: AlexaRig, skill: AlexaSkill) -> None:
    help_ = _post(alexa_settings, "talker", "IntentRequest", intent="AMAZON.HelpIntent")
    assert _speech(help_) == skill.help_speech
    assert help_.json()["response"]["shouldEndSession"] is False
    for intent in ("AMAZON.StopIntent", "AMAZON.CancelIntent"):
        stop = _post(alexa_settings, "talker", "IntentRequest", intent=intent)
        assert _speech(stop) == "Goodbye."
        assert stop.json()["response"]["shouldEndSession"] is True
    fallback = _post(alexa_settings, "talker", "IntentRequest", intent="AMAZON.FallbackIntent")
    assert _speech(fallback) == skill.fallback_speech
    assert fallback.json()["response"]["shouldEndSession"] is False
    assert not Task.objects.exists(), "built-in intents run nothing"


def test_session_ended_request_gets_an_empty_response(
    alexa_settings: AlexaRig, skill: AlexaSkill
) -> None:
    response = _post(alexa_settings, "talker", "SessionEndedRequest")
    assert response.status_code == 200
    assert response.json() == {"version": "1.0", "response": {}}


def test_an_input_the_agent_refuses_is_said_not_failed(alexa_settings: AlexaRig, user: Any) -> None:
    agent = factories.make_agent(
        user,
        slug="strict",
        spec={"command": "echo hi"},
        input_schema={"type": "object", "required": ["city"]},
    )
    make_skill(user, agent)
    response = _post(alexa_settings, "strict", "IntentRequest", intent="Weather")
    assert _speech(response).startswith("Sorry, I couldn't do that.")
    assert not Session.objects.exists(), "a refused task leaves no session behind"


def test_a_bad_signature_is_400(alexa_settings: AlexaRig, skill: AlexaSkill) -> None:
    body, headers = alexa_settings.request("LaunchRequest")
    response = Client().post(
        "/alexa/talker",
        data=body.replace(b"en-US", b"de-DE"),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "alexa_verification_failed"
    unsigned = Client().post("/alexa/talker", data=body, content_type="application/json")
    assert unsigned.status_code == 400
    assert unsigned.json()["error"]["code"] == "alexa_verification_failed"


def test_a_stale_timestamp_is_400(alexa_settings: AlexaRig, skill: AlexaSkill) -> None:
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=200)
    response = _post(alexa_settings, "talker", "LaunchRequest", timestamp=stale)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "alexa_verification_failed"
    assert "Timestamp" in response.json()["error"]["details"]["reason"]


def test_not_an_alexa_request_is_400(alexa_settings: AlexaRig, skill: AlexaSkill) -> None:
    for body in (b"{not json", b"[1, 2]", b'{"version": "1.0"}', b"\xff\xfe"):
        response = Client().post("/alexa/talker", data=body, content_type="application/json")
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "invalid_input"
    get = Client().get("/alexa/talker")
    assert get.status_code == 405 and get["Allow"] == "POST"


def test_an_unknown_skill_is_refused(alexa_settings: AlexaRig, skill: AlexaSkill) -> None:
    other_id = "amzn1.ask.skill.99999999-2222-3333-4444-555555555555"
    response = _post(alexa_settings, "talker", "LaunchRequest", application_id=other_id)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "alexa_skill_not_found"
    # The right skill id at another agent's URL.
    factories.make_agent(skill.owner, slug="someone-else")
    assert _post(alexa_settings, "someone-else", "LaunchRequest").status_code == 404
    assert _post(alexa_settings, "no-such-agent", "LaunchRequest").status_code == 404


def test_a_disabled_skill_is_refused(alexa_settings: AlexaRig, skill: AlexaSkill) -> None:
    AlexaSkill.objects.filter(pk=skill.pk).update(enabled=False)
    response = _post(alexa_settings, "talker", "IntentRequest", intent="Anything")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "alexa_skill_disabled"
    assert not Task.objects.exists()


def test_a_skill_whose_owner_lost_access_is_refused(alexa_settings: AlexaRig, db: Any) -> None:
    alice = factories.make_user("alice-owner")
    bob = factories.make_user("bob-member")
    lab = team_create(user=alice, name="Lab", slug="lab")
    factories.add_member(lab, bob, "member")
    agent = factories.make_agent(alice, slug="lab-agent", team=lab, spec={"command": "echo hi"})
    make_skill(bob, agent, team=lab)
    assert _post(alexa_settings, "lab-agent", "LaunchRequest").status_code == 200

    factories.add_member(lab, bob, "viewer")  # may no longer start tasks in the team
    response = _post(alexa_settings, "lab-agent", "IntentRequest", intent="Anything")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "alexa_skill_no_access"

    lab.memberships.filter(user=bob).delete()  # gone from the team: agent_get finds nothing
    response = _post(alexa_settings, "lab-agent", "IntentRequest", intent="Anything")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "alexa_skill_no_access"
    assert not Task.objects.exists()


def test_a_deactivated_owner_is_refused(alexa_settings: AlexaRig, skill: AlexaSkill) -> None:
    type(skill.owner).objects.filter(pk=skill.owner.pk).update(is_active=False)
    response = _post(alexa_settings, "talker", "LaunchRequest")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "alexa_skill_no_access"


def test_the_endpoint_can_be_switched_off(
    alexa_settings: AlexaRig, skill: AlexaSkill, settings: Any
) -> None:
    settings.ALEXA_ENABLED = False
    response = _post(alexa_settings, "talker", "LaunchRequest")
    assert response.status_code == 404


def test_skill_ids_are_per_agent(alexa_settings: AlexaRig, user: Any) -> None:
    first = factories.make_agent(user, slug="first", spec={"command": "echo 1"})
    second = factories.make_agent(user, slug="second", spec={"command": "echo 2"})
    make_skill(user, first, launch_speech="First.")
    make_skill(user, second, launch_speech="Second.", application_id=APP_ID)
    assert _speech(_post(alexa_settings, "first", "LaunchRequest")) == "First."
    assert _speech(_post(alexa_settings, "second", "LaunchRequest")) == "Second."

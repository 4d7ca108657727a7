"""What the skill answers to each Alexa request (after verification and the skill lookup).

- ``LaunchRequest``: the skill's ``launch_speech``; the session stays open.
- ``IntentRequest``:
  ``AMAZON.HelpIntent`` → ``help_speech`` (open); ``AMAZON.StopIntent``,
  ``AMAZON.CancelIntent``, ``AMAZON.NavigateHomeIntent`` → ``stop_speech`` (ends);
  ``AMAZON.FallbackIntent`` → ``fallback_speech`` (open); any other intent runs the agent with
  the input its slots map to (``integrations.alexa.mapping``), waits up to
  ``ALEXA_MAX_WAIT_S`` and says the answer (plain text, Markdown removed, 8000 characters at
  most; the same text on a Simple card). A task still running then is kept: the skill says
  it is still working, and the next intent of the same Alexa session says that task's answer
  (waiting again) instead of starting another one.
- ``SessionEndedRequest`` and any other request: an empty response (200); nothing is cancelled.

One Alexa session (``session.sessionId``) is one agent session (``metadata.alexa``), so a
conversation keeps its context and workspace. An input the agent refuses, or a queue that is
full, is said to the user rather than failing the request.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from integrations.alexa import selectors, services
from integrations.alexa.mapping import input_for_intent, slot_values
from integrations.alexa.models import AlexaSkill
from integrations.alexa.responses import SPEECH_MAX_CHARS, envelope, speakable
from integrations.runs import Run, result_text, run_wait, task_printed
from runtime_project.exceptions import ApplicationError
from sessions.choices import TERMINAL_STATUSES, TaskStatus
from sessions.models import Agent, Session, Task

STOP_INTENTS = frozenset({"AMAZON.StopIntent", "AMAZON.CancelIntent", "AMAZON.NavigateHomeIntent"})
STILL_WORKING = "I'm still working on that. Ask me again in a moment."
STILL_WORKING_REPROMPT = "Ask me again to hear the answer."
FOLLOW_UP_REPROMPT = "Anything else?"
EMPTY_ANSWER = "Done."
_RESULT_KEYS = ("text", "output", "stdout")


async def respond(
    *, skill: AlexaSkill, agent: Agent, request_envelope: Any, http_request: Any = None
) -> dict[str, Any]:
    """The response envelope (a dict) for a verified request of ``skill``."""
    request = request_envelope.request
    kind = getattr(request, "object_type", None)
    if kind == "LaunchRequest":
        return envelope(speech=skill.launch_speech, reprompt=skill.help_speech, end_session=False)
    if kind != "IntentRequest":
        return envelope()  # SessionEndedRequest and the rest: nothing to say
    intent = request.intent.name if request.intent is not None else ""
    if intent == "AMAZON.HelpIntent":
        return envelope(speech=skill.help_speech, reprompt=skill.help_speech, end_session=False)
    if intent in STOP_INTENTS:
        return envelope(speech=skill.stop_speech, end_session=True)
    if intent == "AMAZON.FallbackIntent":
        return envelope(speech=skill.fallback_speech, reprompt=skill.help_speech, end_session=False)
    return await _run_intent(
        skill=skill,
        agent=agent,
        request_envelope=request_envelope,
        intent=intent,
        http_request=http_request,
    )


async def _run_intent(
    *, skill: AlexaSkill, agent: Agent, request_envelope: Any, intent: str, http_request: Any
) -> dict[str, Any]:
    request = request_envelope.request
    session_env = request_envelope.session
    alexa_session_id = str(getattr(session_env, "session_id", "") or "")
    task_input = input_for_intent(
        skill.slot_mapping or {},
        intent=intent,
        slots=slot_values(request.intent.slots),
        locale=str(getattr(request, "locale", "") or ""),
    )
    try:
        run, resumed = await sync_to_async(_start_or_resume)(
            skill, agent, alexa_session_id, task_input, http_request
        )
    except ApplicationError as exc:  # refused input, full queue, ...: tell the user
        return _answer(skill, f"Sorry, I couldn't do that. {exc.message}")
    task = await run_wait(run, timeout_s=settings.ALEXA_MAX_WAIT_S)
    if task.status not in TERMINAL_STATUSES:
        if not resumed:
            await sync_to_async(services.alexa_session_set_pending)(
                session=run.session, task_uuid=str(task.uuid)
            )
        return envelope(speech=STILL_WORKING, reprompt=STILL_WORKING_REPROMPT, end_session=False)
    if resumed:
        await sync_to_async(services.alexa_session_set_pending)(session=run.session, task_uuid=None)
    text = await sync_to_async(answer_text)(task)
    return _answer(skill, text)


def _answer(skill: AlexaSkill, text: str) -> dict[str, Any]:
    speech = speakable(text) or EMPTY_ANSWER
    if skill.end_session_after_answer:
        return envelope(speech=speech, card_title=skill.name, card_text=speech, end_session=True)
    return envelope(
        speech=speech,
        reprompt=FOLLOW_UP_REPROMPT,
        card_title=skill.name,
        card_text=speech,
        end_session=False,
    )


def _start_or_resume(
    skill: AlexaSkill,
    agent: Agent,
    alexa_session_id: str,
    task_input: dict[str, Any],
    http_request: Any,
) -> tuple[Run, bool]:
    """The run to wait for: the Alexa session's pending task (``resumed`` true) or a new task
    (in the session continuing this Alexa session, or a new one)."""
    session = selectors.alexa_session_find(skill=skill, alexa_session_id=alexa_session_id)
    pending = _pending_task(session) if session is not None else None
    if session is not None and pending is not None:
        return Run(session=session, task=pending), True
    run = services.alexa_run_start(
        skill=skill,
        agent=agent,
        session=session,
        alexa_session_id=alexa_session_id,
        input=task_input,
        request=http_request,
    )
    return run, False


def _pending_task(session: Session) -> Task | None:
    """The task this Alexa session still waits for (``metadata.alexa.pending_task_id``)."""
    pending_id = ((session.metadata or {}).get("alexa") or {}).get("pending_task_id")
    if not pending_id:
        return None
    task = Task.objects.filter(session=session, uuid=pending_id).select_related("session").first()
    if task is None:  # gone: forget it
        services.alexa_session_set_pending(session=session, task_uuid=None)
    return task


def answer_text(task: Task) -> str:
    """What to say for a finished task: its answer text (``result.text``/``output``/
    ``stdout``), else what its commands printed, else ``Done.``; for a task that did not
    succeed, its error message (and what it printed)."""
    result = task.result if isinstance(task.result, dict) else {}
    if any(isinstance(result.get(k), str) and result.get(k) for k in _RESULT_KEYS):
        return result_text(task)
    printed = task_printed(task, max_chars=SPEECH_MAX_CHARS).strip()
    if task.status == TaskStatus.SUCCEEDED:
        if printed:
            return printed
        if isinstance(task.result, str) and task.result.strip():
            return task.result
        return EMPTY_ANSWER
    error = task.error if isinstance(task.error, dict) else {}
    message = str(error.get("message") or f"The task ended as {task.status}.")
    return f"Sorry, that did not work. {message}" + (f"\n{printed}" if printed else "")

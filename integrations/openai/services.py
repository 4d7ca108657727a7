"""Writes of the OpenAI-compatible API: which session a call runs in, importing a client's
earlier conversation, and queueing the task (through ``integrations.runs``).

Session choice, first match wins:

1. ``X-Session-Id: <uuid>``: continue that session of the caller (it must be on the model's
   agent);
2. ``previous_response_id`` (Responses API): continue the session of that response's task;
3. ``user: "<string>"``: the caller's stable session for (credential user, agent, string),
   found by ``session.metadata.openai_user`` (created on first use);
4. otherwise a new session.

A continued session whose task waits for an ``ask_user`` answer gets the new user turn as that
answer (the same task resumes) instead of a new task; one that waits for a tool-call approval
answers 409 ``approval_pending`` (approve through ``POST /api/v1/tasks/{id}/resume``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from accounts.audit import audit_record
from integrations.runs import Run, run_start, session_for_continuation, session_team
from runtime_project.exceptions import Conflict
from sessions import selectors
from sessions.choices import TaskStatus
from sessions.models import Agent, Session, Task
from sessions.services.events import EventDraft, events_append
from sessions.services.sessions import session_create
from sessions.services.waiting import task_resume

from .http import invalid
from .mapping import TurnRequest, task_input

INTEGRATION = "openai"
USER_KEY = "openai_user"  # session.metadata key of the ``user`` field's session
NAME_CHARS = 60


@dataclass(frozen=True)
class Started:
    """A queued (or resumed) task and the log position to follow its events from."""

    run: Run
    after: int


def _user_session(user: Any, agent: Agent, key: str) -> Session | None:
    return (
        selectors.session_list(user=user)
        .filter(agent=agent, owner_id=user.pk, **{f"metadata__{USER_KEY}": key})
        .order_by("created_at")
        .first()
    )


def _previous_session(user: Any, agent: Agent, task_id: str) -> Session:
    task = selectors.task_get(user=user, task_id=task_id, for_write=True)
    if task.session.agent_id != agent.pk:
        raise invalid("previous_response_id belongs to another model.", "previous_response_id")
    return selectors.session_get(user=user, session_id=task.session.uuid, for_write=True)


def session_choose(*, user: Any, agent: Agent, turn: TurnRequest) -> Session | None:
    """The session the call continues, or None for a new one (module docstring).

    Raises:
        NotFound: an unknown or foreign ``X-Session-Id`` / ``previous_response_id``.
        OpenAIError: 400 when ``previous_response_id`` is of another model.
    """
    if turn.session_id:
        return session_for_continuation(user=user, agent=agent, session_id=turn.session_id)
    if turn.previous_task_id:
        return _previous_session(user, agent, turn.previous_task_id)
    if turn.user_key:
        return _user_session(user, agent, turn.user_key)
    return None


def history_import(*, session: Session, messages: list[dict[str, Any]]) -> None:
    """Append a client's earlier conversation to a new session's log as the events an llm task
    would have written (``message.user``, ``message.completed``, ``tool.result``; no task,
    ``data.imported: true``), so the llm runner's history (rebuilt from the log) includes it
    and the REST conversation view shows it."""
    drafts: list[EventDraft] = []
    names: dict[str, str] = {}
    for message in messages:
        if message["role"] == "user":
            data = {"text": message["content"], "imported": True}
            drafts.append(EventDraft("message.user", data))
        elif message["role"] == "assistant":
            calls = message.get("tool_calls") or []
            names.update({call["id"]: call["name"] for call in calls})
            drafts.append(EventDraft("message.completed", {
                "message_id": uuid.uuid4().hex[:12], "text": message["content"],
                "tool_calls": calls, "imported": True,
            }))  # fmt: skip
        elif message["role"] == "tool":
            call_id = message.get("tool_call_id", "")
            drafts.append(EventDraft("tool.result", {
                "call_id": call_id, "name": names.get(call_id, ""), "output": message["content"],
                "is_error": False, "imported": True,
            }))  # fmt: skip
    events_append(session=session, drafts=drafts)


def _waiting_task(session: Session) -> Task | None:
    return (
        Task.objects.filter(session=session, status=TaskStatus.WAITING, parent__isnull=True)
        .select_related("session", "agent")
        .order_by("created_at")
        .first()
    )


def _resume(user: Any, session: Session, waiting: Task, text: str, request: Any) -> Started:
    pending = waiting.pending_action or {}
    if pending.get("kind") != "ask_user":
        raise Conflict(
            "The session waits for a tool-call approval; answer it with "
            f"POST /api/v1/tasks/{waiting.uuid}/resume.",
            code="approval_pending",
            details={"task_id": str(waiting.uuid)},
        )
    after = Session.objects.values_list("last_seq", flat=True).get(pk=session.pk)
    task = task_resume(task=waiting, answer={"reply": text})
    audit_record(
        actor=user, action="task.resume", target=task, details={"integration": INTEGRATION},
        request=request,
    )  # fmt: skip
    return Started(run=Run(session=session, task=task), after=after)


def turn_start(*, user: Any, agent: Agent, turn: TurnRequest, request: Any = None) -> Started:
    """Queue the task of ``turn`` on ``agent`` for ``user`` (sync; call via ``sync_to_async``).

    Raises:
        InvalidInput: the input does not fit the agent. NotFound: see :func:`session_choose`.
        Conflict: ``approval_pending``; as ``task_create``. TooManyRequests: quotas.
    """
    session = session_choose(user=user, agent=agent, turn=turn)
    task_type, input = task_input(agent, turn.text)
    max_wait = float(settings.OPENAI_API_MAX_WAIT_S)
    config: dict[str, Any] = {"timeout_s": min(max_wait, float(settings.TASK_MAX_TIMEOUT_S))}
    if agent.kind == "llm" and turn.model_config:
        config["model"] = dict(turn.model_config)
    with transaction.atomic():
        after = 0
        if session is not None:
            waiting = _waiting_task(session)
            if waiting is not None:
                return _resume(user, session, waiting, turn.text, request)
            after = Session.objects.values_list("last_seq", flat=True).get(pk=session.pk)
        else:
            metadata: dict[str, Any] = {"integration": INTEGRATION}
            if turn.user_key:
                metadata[USER_KEY] = turn.user_key
            session = session_create(
                owner=user, agent=agent, team=session_team(user=user, agent=agent),
                name=turn.text.strip().splitlines()[0][:NAME_CHARS], metadata=metadata,
            )  # fmt: skip
            if agent.kind == "llm" and turn.history:
                history_import(session=session, messages=turn.history)
        run = run_start(
            user=user, agent=agent, integration=INTEGRATION, input=input, task_type=task_type,
            config=config, session=session, request=request,
        )  # fmt: skip
    return Started(run=run, after=after)

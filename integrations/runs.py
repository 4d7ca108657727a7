"""Running an agent on behalf of an integration: one path for the OpenAI API, MCP, ChatGPT,
Alexa and agent endpoints, built on the session/task services and the event log.

Shapes:
- :func:`run_start` creates (or continues) a session and queues a task; it returns a
  :class:`Run`. Every integration run is an ordinary session and task (visible in the admin,
  the REST API and the event streams) whose ``session.metadata["integration"]`` and
  ``task.config["integration"]`` name the integration.
- :func:`run_wait` waits (async) for the task's terminal status, at most ``timeout_s`` seconds.
- :func:`run_events` is the live event stream of the task (an
  :class:`sessions.subscriptions.EventSubscription`, replay included).
- :func:`result_text` turns a finished task's result into the text a chat client shows.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from accounts import access
from accounts.audit import audit_record
from accounts.models import ROLE_RANK, Role
from accounts.selectors import team_for_write
from debugger.headers import run_config_with_headers
from runtime_project.exceptions import Conflict, NotFound
from sessions import selectors
from sessions.apis.oneshot import wait_until_finished
from sessions.choices import TERMINAL_STATUSES
from sessions.models import Agent, Event, Session, Task
from sessions.services.sessions import session_create
from sessions.services.tasks import task_cancel, task_create
from sessions.subscriptions import EventSubscription


@dataclass(frozen=True)
class Run:
    """A session and the task an integration queued on it."""

    session: Session
    task: Task


def session_team(*, user: Any, agent: Agent) -> Any:
    """The team a new session on ``agent`` goes to: the agent's team when the caller may write
    there, else the caller's default team (a public agent of another team).

    Raises:
        Forbidden: a viewer of the agent's team (a private agent: viewers may not start runs).
        NotFound, Forbidden: the caller has no team to write in (as ``team_for_write``).
    """
    role = access.role_in(user, agent.team_id)
    if role is not None and (ROLE_RANK[role] >= ROLE_RANK[Role.MEMBER] or not agent.is_public):
        access.require_role(user, agent.team_id, Role.MEMBER, what="Agent")
        return agent.team
    return team_for_write(user=user, team_id=None)


def run_start(
    *,
    user: Any,
    agent: Agent,
    integration: str,
    input: dict[str, Any],
    task_type: str = "run",
    config: dict[str, Any] | None = None,
    session: Session | None = None,
    session_name: str = "",
    session_metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    request: Any = None,
) -> Run:
    """Queue a task on ``agent`` for ``user`` (sync; call through ``sync_to_async``).

    ``session``: continue that session (it must be on ``agent``); else a new session is
    created in :func:`session_team`. ``integration`` (``openai``, ``mcp``, ``chatgpt``,
    ``alexa``, ``endpoint``) is recorded in the session metadata, the task config and the audit
    log.

    ``idempotency_key``: a retry with a key ``user`` already used returns that earlier run
    (no new session, no new task), as ``POST /sessions/{id}/tasks`` does.

    ``request`` (the integration's HTTP request): its debug headers (``X-MONITOR-ID``,
    ``X-DEBUG-RUN``, ``X-FORCE-*``; ``debugger.headers``) are applied to ``config``.

    Raises:
        InvalidInput: the input does not match the agent's input schema.
        NotFound: the agent is not usable by ``user``; ``monitor_not_found`` for an
            ``X-MONITOR-ID`` the caller may not use.
        Conflict: ``idempotency_key_reused`` for a key used on another agent; else as
            :func:`sessions.services.tasks.task_create` (with TooManyRequests).
    """
    headers = getattr(request, "headers", None)  # Django's or Starlette's (MCP) request
    if headers is not None:  # X-MONITOR-ID, X-DEBUG-RUN, X-FORCE-* (docs/monitors.md)
        config = run_config_with_headers(config, headers=headers, user=user)
    if idempotency_key:
        earlier = (
            Task.objects.select_related("session", "agent")
            .filter(created_by=user, idempotency_key=idempotency_key)
            .first()
        )
        if earlier is not None:
            if earlier.agent_id != agent.pk:
                raise Conflict(
                    "This Idempotency-Key was used for another agent.",
                    code="idempotency_key_reused",
                    details={"task": str(earlier.uuid)},
                )
            return Run(session=earlier.session, task=earlier)
    config = {**(config or {}), "integration": integration}
    with transaction.atomic():  # a refused task must not leave an empty session behind
        if session is None:
            session = session_create(
                owner=user,
                team=session_team(user=user, agent=agent),
                agent=agent,
                name=session_name,
                metadata={**(session_metadata or {}), "integration": integration},
            )
        task, _ = task_create(
            session=session,
            user=user,
            task_type=task_type,
            input=input,
            config=config,
            idempotency_key=idempotency_key,
        )
    audit_record(
        actor=user,
        action="task.create",
        target=task,
        details={"integration": integration},
        request=request,
    )
    return Run(session=session, task=task)


def session_for_continuation(*, user: Any, agent: Agent, session_id: str) -> Session:
    """The caller's session ``session_id`` (uuid) to continue, checked to be on ``agent``.

    Raises:
        NotFound: unknown, not the caller's, or on another agent.
    """
    session = selectors.session_get(user=user, session_id=session_id, for_write=True)
    if session.agent_id != agent.pk:
        raise NotFound("Session not found for this model.", details={"session": session_id})
    return session


async def run_wait(run: Run, *, timeout_s: float) -> Task:
    """Wait up to ``timeout_s`` seconds for the task to finish; returns the task re-read from
    the database (terminal, or still active when the time ran out). A task ``waiting`` for an
    answer (``ask_user``) is still active: callers that answer questions follow
    :func:`run_events` instead."""
    await wait_until_finished(run.task, timeout_s)
    return await sync_to_async(Task.objects.select_related("session", "agent").get)(pk=run.task.pk)


def run_events(run: Run, *, after: int = 0, heartbeat_s: float | None = None) -> EventSubscription:
    """The task's events from ``after`` on, live, ending after its terminal ``task.status``.
    Use as ``async with run_events(run) as sub: async for envelope in sub: …`` (``None`` items
    are heartbeats)."""
    return EventSubscription(
        session=run.session, task=run.task, after=after, heartbeat_s=heartbeat_s
    )


async def run_cancel(run: Run, *, reason: str) -> None:
    """Cancel the task unless it already finished (a client went away, or cancelled)."""

    def _cancel() -> None:
        task = Task.objects.get(pk=run.task.pk)
        if task.status not in TERMINAL_STATUSES:
            task_cancel(task=task, reason=reason)

    with contextlib.suppress(Exception):
        await sync_to_async(_cancel)()


def task_printed(task: Task, *, max_chars: int) -> str:
    """What ``task``'s commands printed (its ``process.stdout`` events, in order), at most
    ``max_chars`` characters: the last ones, where a command's conclusion is. Sync (ORM)."""
    chunks: list[str] = []
    size = 0
    rows = (
        Event.objects.filter(task=task, type="process.stdout")
        .order_by("-seq")
        .values_list("data", flat=True)
    )
    for data in rows.iterator(chunk_size=200):
        text = data.get("text") if isinstance(data, dict) else None
        if isinstance(text, str):
            chunks.append(text)
            size += len(text)
            if size >= max_chars:
                break
    return "".join(reversed(chunks))[-max_chars:]


def answer_text(task: Task, *, max_chars: int = 100_000) -> str:
    """:func:`result_text`, except for a succeeded task whose result has no text (a command:
    exit code and sizes only): then what it printed (:func:`task_printed`). Sync (ORM)."""
    result = task.result if isinstance(task.result, dict) else {}
    has_text = any(isinstance(result.get(k), str) and result.get(k) for k in _TEXT_KEYS)
    if task.status == "succeeded" and not has_text:
        printed = task_printed(task, max_chars=max_chars)
        if printed:
            return printed
    return result_text(task)


_TEXT_KEYS = ("text", "output", "stdout")


def result_text(task: Task) -> str:
    """A finished task's answer as text: ``result.text`` (llm), else ``result.stdout`` /
    ``result.output`` (command, python), else the result as JSON; for a failed task the error
    message."""
    result = task.result
    if isinstance(result, dict):
        for key in _TEXT_KEYS:
            value = result.get(key)
            if isinstance(value, str) and value:
                return value
    if result not in (None, {}, ""):
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    if isinstance(task.error, dict):
        return str(task.error.get("message", ""))
    return ""

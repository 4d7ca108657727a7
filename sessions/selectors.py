"""Reads. Every selector takes the requesting user and only returns objects of the user's teams
(or public agents), so object-level access is never forgotten: a stranger gets 404, a team
viewer gets 403 on writes (``for_write``), and an API key only sees its own team."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q, QuerySet

from accounts import access
from accounts.models import Role
from runtime_project.db import unique_or_none
from runtime_project.exceptions import Forbidden, NotFound
from sessions.choices import ACTIVE_STATUSES
from sessions.models import Agent, Artifact, Event, Session, ShareLink, Task


def _uuid_or_404(value: Any, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"{what} not found.", details={"id": str(value)}) from None


def _writable(user: Any, team_id: int, what: str) -> None:
    """Raises Forbidden when ``user`` sees ``team_id``'s object but is only a viewer there."""
    access.require_role(user, team_id, Role.MEMBER, what=what)


def agent_list(*, user: Any) -> QuerySet[Agent]:
    """Agents of the user's teams and public agents (not deleted)."""
    return Agent.objects.filter(
        Q(team_id__in=access.team_ids(user)) | Q(is_public=True), deleted_at__isnull=True
    )


def agent_get(*, user: Any, agent_id: Any, for_write: bool = False) -> Agent:
    """One agent by uuid or slug (an agent of the user's teams wins over a public one of the
    same slug). With ``for_write`` the user must be a member (not a viewer) of its team.

    Raises:
        NotFound: unknown, deleted, or not visible to ``user``.
        Forbidden: visible but not writable (a viewer, or a public agent of another team).
    """
    qs = agent_list(user=user)
    try:
        agent = unique_or_none(qs.filter(uuid=uuid.UUID(str(agent_id))))
    except ValueError:
        matches = qs.filter(slug=str(agent_id)).order_by("created_at")
        agent = matches.filter(team_id__in=access.team_ids(user)).first() or matches.first()
    if agent is None:
        raise NotFound("Agent not found.", details={"id": str(agent_id)})
    if for_write:
        if access.role_in(user, agent.team_id) is None:
            raise Forbidden("This public agent belongs to another team; it is read-only to you.")
        _writable(user, agent.team_id, "Agent")
    return agent


def session_list(*, user: Any, deleted: bool = False) -> QuerySet[Session]:
    return Session.objects.filter(
        team_id__in=access.team_ids(user), deleted_at__isnull=not deleted
    ).select_related("agent", "team")


def session_get(
    *, user: Any, session_id: Any, include_deleted: bool = False, for_write: bool = False
) -> Session:
    """One session of the user's teams.

    Raises:
        NotFound: unknown, not in the user's teams, or soft-deleted (unless asked).
        Forbidden: ``for_write`` and the user is a viewer of its team.
    """
    sid = _uuid_or_404(session_id, "Session")
    qs = Session.objects.filter(team_id__in=access.team_ids(user), uuid=sid).select_related("agent")
    if not include_deleted:
        qs = qs.filter(deleted_at__isnull=True)
    session = unique_or_none(qs)
    if session is None:
        raise NotFound("Session not found.", details={"id": str(session_id)})
    if for_write:
        _writable(user, session.team_id, "Session")
    return session


def task_list(
    *, user: Any, session: Session | None = None, status: list[str] | None = None
) -> QuerySet[Task]:
    qs = Task.objects.filter(
        session__team_id__in=access.team_ids(user), session__deleted_at__isnull=True
    )
    if session is not None:
        qs = qs.filter(session=session)
    if status:
        qs = qs.filter(status__in=status)
    return qs.select_related("session", "agent", "forked_from")


def task_get(*, user: Any, task_id: Any, for_write: bool = False) -> Task:
    """One task of a live session of the user's teams.

    Raises:
        NotFound: unknown or not visible. Forbidden: ``for_write`` by a viewer.
    """
    tid = _uuid_or_404(task_id, "Task")
    task = (
        Task.objects.filter(
            uuid=tid,
            session__team_id__in=access.team_ids(user),
            session__deleted_at__isnull=True,
        )
        .select_related("session", "agent", "forked_from")
        .first()
    )
    if task is None:
        raise NotFound("Task not found.", details={"id": str(task_id)})
    if for_write:
        _writable(user, task.session.team_id, "Task")
    return task


def task_active_for_session(*, session: Session) -> QuerySet[Task]:
    return Task.objects.filter(session=session, status__in=ACTIVE_STATUSES).order_by("created_at")


def task_queue_position(*, task: Task) -> int | None:
    """0-based position of a queued task among its session's queued tasks (``None`` if not
    queued), so clients can see the queue of waiting tasks."""
    if task.status != "queued":
        return None
    return Task.objects.filter(
        session_id=task.session_id, status="queued", created_at__lt=task.created_at
    ).count()


def event_list(
    *, session: Session, after: int = 0, limit: int = 1000, task: Task | None = None
) -> list[dict[str, Any]]:
    """Envelopes of the session's events with ``seq > after``, oldest first, at most ``limit``."""
    qs = Event.objects.filter(session=session, seq__gt=after)
    if task is not None:
        qs = qs.filter(task=task)
    rows = (
        qs.order_by("seq")
        .select_related("task")
        .only("seq", "type", "data", "created_at", "task__uuid")[:limit]
    )
    sid = str(session.uuid)
    return [
        e.envelope(session_uuid=sid, task_uuid=str(e.task.uuid) if e.task_id else None)  # type: ignore[union-attr]
        for e in rows
    ]


def artifact_list(
    *, user: Any, session: Session | None = None, task: Task | None = None
) -> QuerySet[Artifact]:
    """Artifacts of live sessions of the user's teams (of ``session``, of ``task``), newest
    first."""
    qs = Artifact.objects.filter(
        session__team_id__in=access.team_ids(user), session__deleted_at__isnull=True
    )
    if session is not None:
        qs = qs.filter(session=session)
    if task is not None:
        qs = qs.filter(task=task)
    return qs.select_related("session", "task").order_by("-created_at", "-pk")


def artifact_get(*, user: Any, artifact_id: Any, for_write: bool = False) -> Artifact:
    """One artifact of a live session of the user's teams.

    Raises:
        NotFound: unknown or not visible. Forbidden: ``for_write`` by a viewer.
    """
    aid = _uuid_or_404(artifact_id, "Artifact")
    artifact = artifact_list(user=user).filter(uuid=aid).first()
    if artifact is None:
        raise NotFound("Artifact not found.", details={"id": str(artifact_id)})
    if for_write:
        _writable(user, artifact.session.team_id, "Artifact")
    return artifact


def shared_artifact_get(*, session: Session, artifact_id: Any) -> Artifact:
    """One artifact of ``session`` (a session a share link resolved to).

    Raises:
        NotFound: unknown, or an artifact of another session.
    """
    aid = _uuid_or_404(artifact_id, "Artifact")
    artifact = Artifact.objects.filter(session=session, uuid=aid).select_related("task").first()
    if artifact is None:
        raise NotFound("Artifact not found.", details={"id": str(artifact_id)})
    return artifact


MESSAGE_TYPES = {"message.user": "user", "message.completed": "assistant", "tool.result": "tool"}


def message_list(*, session: Session, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """The session's conversation (chat-style agents), oldest first, from its event log:
    ``[{"seq", "task_id", "role": "user"|"assistant"|"tool", "content", "created_at",
    "tool_calls"? (assistant), "tool_call_id", "name", "is_error"? (tool)}]`` for events with
    ``seq > after``, at most ``limit``. Turns of child tasks (an agent calling an agent) are
    left out: their parent's tool results carry them."""
    rows = (
        Event.objects.filter(
            session=session, seq__gt=after, type__in=MESSAGE_TYPES, task__parent__isnull=True
        )
        .select_related("task")
        .order_by("seq")[:limit]
    )
    out = []
    for e in rows:
        data = e.data
        message: dict[str, Any] = {
            "seq": e.seq,
            "task_id": str(e.task.uuid) if e.task else None,
            "role": MESSAGE_TYPES[e.type],
            "content": data.get("output" if e.type == "tool.result" else "text", ""),
            "created_at": e.created_at,
        }
        if e.type == "message.completed":
            message["tool_calls"] = data.get("tool_calls") or []
        elif e.type == "tool.result":
            message.update(tool_call_id=data.get("call_id"), name=data.get("name"),
                           is_error=bool(data.get("is_error")))  # fmt: skip
        out.append(message)
    return out


def share_link_list(*, session: Session) -> QuerySet[ShareLink]:
    """The session's share links (revoked and expired ones too), newest first. The caller
    got ``session`` from :func:`session_get`, which checked the user's access."""
    return ShareLink.objects.filter(session=session).select_related("created_by")


def share_link_get(*, session: Session, share_id: Any) -> ShareLink:
    """One share link of ``session`` by its public id.

    Raises:
        NotFound: (``share_not_found``) unknown, or a link of another session.
    """
    try:
        link = share_link_list(session=session).filter(uuid=uuid.UUID(str(share_id))).first()
    except ValueError:
        link = None
    if link is None:
        raise NotFound(
            "Share link not found.", code="share_not_found", details={"id": str(share_id)}
        )
    return link

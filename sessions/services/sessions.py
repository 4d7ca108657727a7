"""Session writes: create, update, soft delete and restore."""

from __future__ import annotations

import logging
import shutil
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.selectors import default_team
from runtime_project.exceptions import NotFound
from sessions.choices import SessionStatus
from sessions.models import Agent, Session
from sessions.services.events import event_append

logger = logging.getLogger(__name__)


def session_create(
    *,
    owner: Any,
    agent: Agent,
    team: Any | None = None,
    name: str = "",
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Session:
    """Create a session on ``agent`` in ``team`` (default: ``owner``'s default team) with an
    empty workspace directory; ``owner`` is the user creating it.

    Raises:
        NotFound: ``agent`` is a private agent of another team.
        Forbidden: ``model_not_allowed``: ``metadata.model_config.name`` names a model the
            team may not use.
    """
    if team is None:
        team = default_team(user=owner)
    if agent.team_id != team.pk and not agent.is_public:
        raise NotFound("Agent not found.", details={"id": str(agent.uuid)})
    from providers.access import session_model_check

    session_model_check(team=team, metadata=metadata)  # 403 model_not_allowed
    with transaction.atomic():
        session = Session.objects.create(
            owner=owner,
            team=team,
            agent=agent,
            name=name,
            tags=tags or [],
            metadata=metadata or {},
        )
        event_append(
            session=session,
            type="session.created",
            data={"agent": agent.slug, "agent_version": agent.version},
        )
    session.workspace_path.mkdir(parents=True, exist_ok=True)
    return session


def session_update(*, session: Session, **changes: Any) -> Session:
    """Apply ``changes`` (name, tags, metadata, status).

    Raises:
        Forbidden: ``model_not_allowed``: ``metadata.model_config.name`` names a model the
            session's team may not use.
    """
    if "metadata" in changes:
        from providers.access import session_model_check

        session_model_check(team=session.team_id, metadata=changes["metadata"])
    for key, value in changes.items():
        setattr(session, key, value)
    session.save(update_fields=[*changes.keys(), "updated_at"])
    return session


def session_delete(*, session: Session) -> None:
    """Soft delete: cancels active tasks, hides the session; restore brings it back."""
    from sessions.services.tasks import task_cancel_all

    task_cancel_all(session=session, reason="session deleted")
    session.deleted_at = timezone.now()
    session.status = SessionStatus.CLOSED
    session.save(update_fields=["deleted_at", "status", "updated_at"])
    # Its sandbox goes with it (the workspace stays, for restore); the periodic reap catches a
    # sandbox another machine runs.
    from sandboxes.services import sandbox_stop_sync

    try:
        sandbox_stop_sync(session=session)
    except Exception:
        logger.warning(
            "could not stop the sandbox of deleted session %s", session.uuid, exc_info=True
        )


def session_restore(*, session: Session) -> Session:
    session.deleted_at = None
    session.status = SessionStatus.IDLE
    session.save(update_fields=["deleted_at", "status", "updated_at"])
    session.workspace_path.mkdir(parents=True, exist_ok=True)
    return session


def session_purge_workspace(*, session: Session) -> None:
    """Remove the workspace directory (used by hard deletes and tests)."""
    shutil.rmtree(session.workspace_path, ignore_errors=True)

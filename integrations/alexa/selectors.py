"""Reads of the Alexa app.

The user-facing ones take the requesting user and return only skills of the user's teams (the
API key's team for a key): a stranger gets 404, a viewer 403 on writes (``for_write``). The
endpoint's (:func:`alexa_skill_for_request`, :func:`alexa_skill_agent_for_run`,
:func:`alexa_session_find`) act for a verified Alexa request: they check the skill owner's
access instead of a caller's.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from accounts import access
from accounts.models import Role
from integrations.alexa.models import AlexaSkill
from runtime_project.exceptions import ApplicationError, Forbidden, NotFound
from sessions.models import Agent, Session
from sessions.selectors import agent_get, session_list

WRITE_ROLE = Role.MEMBER  # who may create, change and delete a team's skills (and run as self)


def alexa_skill_list(*, user: Any) -> QuerySet[AlexaSkill]:
    """The skills of ``user``'s teams, by name (agent, team and owner loaded)."""
    return (
        AlexaSkill.objects.filter(team_id__in=access.team_ids(user))
        .select_related("agent", "team", "owner")
        .order_by("name", "created_at")
    )


def alexa_skill_get(*, user: Any, skill_id: Any, for_write: bool = False) -> AlexaSkill:
    """One skill of ``user``'s teams by its public id; with ``for_write`` the user must be a
    member (not a viewer) of its team.

    Raises:
        NotFound: not a UUID, unknown, or of a team the user is not in.
        Forbidden: ``for_write`` and the user is a viewer of its team.
    """
    try:
        key: uuid.UUID | None = uuid.UUID(str(skill_id))
    except (ValueError, TypeError, AttributeError):
        key = None
    skill = alexa_skill_list(user=user).filter(uuid=key).first() if key else None
    if skill is None:
        raise NotFound("Alexa skill not found.", details={"id": str(skill_id)})
    if for_write:
        access.require_role(user, skill.team_id, WRITE_ROLE, what="Alexa skill")
    return skill


def alexa_skill_agent_get(*, user: Any, team: Any, agent_id: Any) -> Agent:
    """The agent ``agent_id`` (uuid or slug) as ``user`` sees it, if sessions of ``team`` may
    run it (an agent of ``team`` or a public one).

    Raises:
        NotFound: not visible to ``user``, or a private agent of another team.
    """
    agent = agent_get(user=user, agent_id=agent_id)
    if agent.team_id != getattr(team, "pk", team) and not agent.is_public:
        raise NotFound(
            "Agent not found in the skill's team (use an agent of that team or a public one).",
            details={"id": str(agent_id)},
        )
    return agent


def alexa_skill_for_request(*, application_id: str, agent_ref: str) -> AlexaSkill:
    """The skill ``application_id`` bound to the agent ``agent_ref`` (uuid or slug) of the
    URL. Not access-checked: the request was verified as Alexa's; check the owner with
    :func:`alexa_skill_agent_for_run`.

    Raises:
        NotFound: ``alexa_skill_not_found``: no such binding (a deleted agent has none).
    """
    qs = AlexaSkill.objects.filter(
        application_id=application_id, agent__deleted_at__isnull=True
    ).select_related("agent", "team", "owner")
    try:
        qs = qs.filter(agent__uuid=uuid.UUID(str(agent_ref)))
    except ValueError:
        qs = qs.filter(agent__slug=str(agent_ref))
    skill = qs.order_by("created_at").first()
    if skill is None:
        raise NotFound(
            "No Alexa skill with this application id is bound to this agent.",
            code="alexa_skill_not_found",
            details={"application_id": application_id, "agent": str(agent_ref)},
        )
    return skill


def alexa_skill_agent_for_run(*, skill: AlexaSkill) -> Agent:
    """The skill's agent, if its owner may still run it in the skill's team: the owner is
    active, a member (not a viewer) of the team, and ``agent_get`` still finds the agent for
    them (an agent of the team or a public one).

    Raises:
        Forbidden: ``alexa_skill_no_access``, saying which of these failed.
    """
    owner = skill.owner
    try:
        if not owner.is_active:
            raise Forbidden("The skill's owner is deactivated.")
        access.require_role(owner, skill.team_id, WRITE_ROLE, what="Team")
        return alexa_skill_agent_get(user=owner, team=skill.team_id, agent_id=skill.agent.uuid)
    except ApplicationError as exc:
        raise Forbidden(
            "The skill's owner may no longer run its agent; a member of the team may "
            "register the skill again.",
            code="alexa_skill_no_access",
            details={"reason": exc.message},
        ) from exc


def alexa_session_find(*, skill: AlexaSkill, alexa_session_id: str) -> Session | None:
    """The live session of the skill's team that continues Alexa session
    ``alexa_session_id`` (its ``metadata.alexa``), as the owner sees it, or ``None``."""
    if not alexa_session_id:
        return None
    return (
        session_list(user=skill.owner)
        .filter(
            team_id=skill.team_id,
            agent_id=skill.agent_id,
            metadata__alexa__skill_id=str(skill.uuid),
            metadata__alexa__session_id=alexa_session_id,
        )
        .order_by("-created_at")
        .first()
    )

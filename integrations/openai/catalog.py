"""Agents as OpenAI models: which agents a credential sees on ``/v1``, their model ids, and
the agent a ``model`` string names.

A model id is the agent's slug. When two agents the caller can use share a slug (an agent of
one of the caller's teams and a public agent of another team, or agents of two of the caller's
teams), both are listed as ``<team-slug>/<agent-slug>``. Lookups accept the listed id, the
qualified ``<team-slug>/<agent-slug>`` form, the agent's UUID, or a bare slug (which, like the
REST API, prefers an agent of the caller's own teams over a public one). Agents flagged
``integrations: {"openai": false}`` are neither listed nor usable here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from accounts import access
from runtime_project.exceptions import NotFound
from sessions import selectors
from sessions.endpoints import is_exposed
from sessions.models import Agent

from .http import OpenAIError


def _qualified(agent: Agent) -> str:
    return f"{agent.team.slug}/{agent.slug}"


def model_list(*, user: Any) -> list[tuple[str, Agent]]:
    """``[(model id, agent)]`` of the agents ``user`` may use and that are exposed to the
    OpenAI API, sorted by id; agents whose model the team that would run them may not use
    are left out (``providers.access.agent_filter``)."""
    from providers.access import agent_filter

    allowed = agent_filter(user=user)
    agents = [
        agent
        for agent in selectors.agent_list(user=user).select_related("team").order_by("created_at")
        if is_exposed(agent, "openai") and allowed(agent)
    ]
    counts = Counter(agent.slug for agent in agents)
    listed = [(_qualified(a) if counts[a.slug] > 1 else a.slug, a) for a in agents]
    return sorted(listed, key=lambda pair: pair[0])


def model_get(*, user: Any, model: str) -> Agent:
    """The agent ``model`` names (see the module docstring).

    Raises:
        OpenAIError: 404 ``model_not_found``: unknown, not visible to ``user``, or not exposed.
    """
    agent: Agent | None = None
    if "/" in model:
        team_slug, _, slug = model.partition("/")
        agent = (
            selectors.agent_list(user=user)
            .select_related("team")
            .filter(team__slug=team_slug, slug=slug)
            .first()
        )
    elif model:
        # Among the exposed agents of that slug (a hidden agent of one's own team must not
        # shadow a listed public one), one's own teams' first, like ``agent_get``.
        same_slug = selectors.agent_list(user=user).filter(slug=model).order_by("created_at")
        exposed = [a for a in same_slug if is_exposed(a, "openai")]
        teams = set(access.team_ids(user))
        agent = next((a for a in exposed if a.team_id in teams), exposed[0] if exposed else None)
        if agent is None and not same_slug.exists():
            try:  # an agent's UUID
                agent = selectors.agent_get(user=user, agent_id=model)
            except NotFound:
                agent = None
    if agent is None or not is_exposed(agent, "openai"):
        raise OpenAIError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    return agent


def model_object(model_id: str, agent: Agent) -> dict[str, Any]:
    """An OpenAI ``model`` object (plus the agent's ``name`` and ``description``, which
    OpenAI's clients ignore)."""
    return {
        "id": model_id,
        "object": "model",
        "created": int(agent.created_at.timestamp()),
        "owned_by": agent.team.slug,
        "name": agent.name,
        "description": agent.description,
    }

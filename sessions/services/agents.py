"""Agent writes: create, update (a new version on every spec change), soft delete."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.selectors import default_team
from runtime_project.db import unique_or_none
from runtime_project.exceptions import Conflict
from sessions.endpoints import validate_endpoints, validate_integrations
from sessions.models import Agent, AgentVersion
from sessions.runners import get_runner_class
from sessions.runners.base import validate_json_schema


def _validate(kind: str, spec: dict[str, Any], input_schema: dict[str, Any]) -> None:
    get_runner_class(kind).validate_spec(spec)
    if input_schema:
        validate_json_schema(input_schema)


@transaction.atomic
def agent_create(
    *,
    owner: Any,
    team: Any | None = None,
    slug: str,
    name: str,
    kind: str,
    spec: dict[str, Any],
    description: str = "",
    input_schema: dict[str, Any] | None = None,
    is_public: bool = False,
    endpoints: list[dict[str, Any]] | None = None,
    integrations: dict[str, bool] | None = None,
) -> Agent:
    """Create an agent at version 1 in ``team`` (default: ``owner``'s default team); ``owner``
    is the user creating it.

    Raises:
        InvalidInput: unknown kind, spec, input_schema, endpoints or integrations invalid.
        Forbidden: ``model_not_allowed``: the spec names a model the team may not use.
        Conflict: the team already has an agent with this slug.
    """
    input_schema = input_schema or {}
    endpoints = endpoints or []
    integrations = integrations or {}
    _validate(kind, spec, input_schema)
    validate_endpoints(endpoints)
    validate_integrations(integrations)
    if team is None:
        team = default_team(user=owner)
    from providers.access import agent_model_check

    agent_model_check(team=team, spec=spec)  # team model access: 403 model_not_allowed
    if Agent.objects.filter(team=team, slug=slug, deleted_at__isnull=True).exists():
        raise Conflict(f"The team already has an agent called {slug!r}.", code="slug_taken")
    try:
        with transaction.atomic():
            agent = Agent.objects.create(
                owner=owner,
                team=team,
                slug=slug,
                name=name,
                kind=kind,
                spec=spec,
                description=description,
                input_schema=input_schema,
                is_public=is_public,
                endpoints=endpoints,
                integrations=integrations,
            )
    except IntegrityError:
        raise Conflict(
            f"The team already has an agent called {slug!r}.", code="slug_taken"
        ) from None
    _snapshot(agent, owner)
    return agent


def _snapshot(agent: Agent, user: Any) -> None:
    AgentVersion.objects.create(
        agent=agent,
        version=agent.version,
        kind=agent.kind,
        spec=agent.spec,
        input_schema=agent.input_schema,
        description=agent.description,
        created_by=user,
    )


@transaction.atomic
def agent_update(*, agent: Agent, user: Any, **changes: Any) -> Agent:
    """Apply ``changes`` (name, description, spec, input_schema, is_public, endpoints,
    integrations). A change of ``spec``, ``kind`` or ``input_schema`` bumps the version and
    records it; endpoints and exposure flags are not versioned (they do not change what a task
    runs).

    Raises:
        InvalidInput: the new spec, schema, endpoints or flags are invalid.
        Forbidden: ``model_not_allowed``: a new spec names a model the team may not use.
    """
    if "endpoints" in changes:
        validate_endpoints(changes["endpoints"])
    if "integrations" in changes:
        validate_integrations(changes["integrations"])
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    versioned = False
    for key in ("kind", "spec", "input_schema"):
        if key in changes and changes[key] != getattr(agent, key):
            versioned = True
    for key, value in changes.items():
        setattr(agent, key, value)
    if versioned:
        _validate(agent.kind, agent.spec, agent.input_schema)
        from providers.access import agent_model_check

        agent_model_check(team=agent.team_id, spec=agent.spec)  # 403 model_not_allowed
        agent.version += 1
    agent.save()
    if versioned:
        _snapshot(agent, user)
    return agent


def agent_delete(*, agent: Agent) -> None:
    """Soft delete: hidden from lists; existing sessions and tasks keep working for reads."""
    agent.deleted_at = timezone.now()
    agent.save(update_fields=["deleted_at", "updated_at"])


def agent_spec_at(*, agent: Agent, version: int) -> dict[str, Any]:
    """The spec a task pinned (falls back to the current spec if history is missing)."""
    row = unique_or_none(AgentVersion.objects.filter(agent=agent, version=version).only("spec"))
    return row.spec if row else agent.spec

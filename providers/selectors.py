"""Reads of the providers app, each scoped to the teams of the requesting user.

Credentials belong to a team: every member (viewers included) may list and read them (never
the secret), only admins may change them (``for_write``); a stranger gets 404.
``credential_secret`` is the one place a stored secret is decrypted; the llm runner calls it,
with the credentials of the running agent's team. ``model_list`` is ``GET /api/v1/models``: the
agents a user can use and their models, plus the configured catalogue (``settings.LLM_MODELS``).
"""

from __future__ import annotations

import uuid as uuid_lib
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from accounts import access
from accounts.models import Role
from providers import access as model_access
from providers import crypto
from providers.models import ProviderCredential
from runtime_project.exceptions import Conflict, NotFound
from sessions.models import Agent
from sessions.selectors import agent_list

LLM_KIND = "llm"  # sessions.runners.llm.runner.LlmRunner.kind
WRITE_ROLE = Role.ADMIN  # who may create, change and delete a team's credentials


def _team_pk(team: Any) -> Any:
    """The primary key of ``team`` (a Team or its pk)."""
    return getattr(team, "pk", team)


def credential_list(*, user: Any) -> QuerySet[ProviderCredential]:
    """The credentials of ``user``'s teams (only the API key's team for a key), ordered by
    name (``agent`` and ``team`` loaded)."""
    return (
        ProviderCredential.objects.filter(team_id__in=access.team_ids(user))
        .select_related("agent", "team")
        .order_by("name", "created_at")
    )


def credential_get(*, user: Any, uuid: Any, for_write: bool = False) -> ProviderCredential:
    """One credential of ``user``'s teams by its public id. With ``for_write`` the user must be
    an admin (or owner) of its team.

    Raises:
        NotFound: not a UUID, unknown, or a credential of a team the user is not in
            (``credential_not_found``).
        Forbidden: ``for_write`` and the user's role in its team is below admin.
    """
    try:
        key = UUID(str(uuid))
    except (ValueError, TypeError, AttributeError):
        key = None
    credential = credential_list(user=user).filter(uuid=key).first() if key else None
    if credential is None:
        raise NotFound(
            "Credential not found.", code="credential_not_found", details={"id": str(uuid)}
        )
    if for_write:
        access.require_role(user, credential.team_id, WRITE_ROLE, what="Credential")
    return credential


def credential_agent_get(*, team: Any, agent_id: Any) -> Agent:
    """A live agent of ``team`` by uuid or slug: the only agents a credential of ``team`` may
    be restricted to (a public agent of another team is not one of them).

    Raises:
        NotFound: ``not_found``: no such live agent in ``team``.
    """
    qs = Agent.objects.filter(team_id=_team_pk(team), deleted_at__isnull=True)
    try:
        agent = qs.filter(uuid=uuid_lib.UUID(str(agent_id))).first()
    except ValueError:
        agent = qs.filter(slug=str(agent_id)).order_by("created_at").first()
    if agent is None:
        raise NotFound("Agent not found.", details={"id": str(agent_id)})
    return agent


def unreadable(credential: ProviderCredential) -> Conflict:
    """The error for a credential no configured key decrypts (keys changed or lost)."""
    return Conflict(
        f"The credential {credential.name!r} cannot be decrypted with the server's keys "
        "(CREDENTIALS_ENCRYPTION_KEYS or SECRET_KEY changed); store its secret again.",
        code="credential_unreadable",
        details={"name": credential.name},
    )


def credential_secret(
    *, team: Any, name: str, agent: Agent | None, provider: str | None = None
) -> str:
    """The decrypted secret of ``team``'s credential ``name`` for a run of ``agent``; records
    ``last_used_at``. Sync (ORM): call it through ``sync_to_async`` from async code.

    A credential restricted to an agent is only usable by that agent. ``team`` is a team (or
    its pk): the llm runner passes the running agent's team, so a public agent's runs use the
    credentials of the team that wrote the agent, never the caller's (an agent's author picks
    its ``base_url`` and must not be able to send the caller's keys there).

    Args:
        provider: when given, the wire format the key will be sent to; a credential stored for
            another provider is refused (an Anthropic key is not sent to an OpenAI endpoint).

    Raises:
        NotFound: ``credential_not_found``: no such credential of the team, or it is restricted
            to another agent (details ``{"name"}``).
        Conflict: ``credential_provider_mismatch`` (details ``{"name", "provider",
            "expected"}``) or ``credential_unreadable`` (no configured key decrypts it).
    """
    credential = ProviderCredential.objects.filter(team_id=_team_pk(team), name=name).first()
    agent_pk = agent.pk if agent is not None else None
    if credential is None or (credential.agent_id is not None and credential.agent_id != agent_pk):
        raise NotFound(
            f"No credential named {name!r} is available to this agent.",
            code="credential_not_found",
            details={"name": name},
        )
    if provider is not None and credential.provider != provider:
        raise Conflict(
            f"The credential {name!r} is for {credential.provider}, not {provider}.",
            code="credential_provider_mismatch",
            details={"name": name, "provider": credential.provider, "expected": provider},
        )
    try:
        secret = crypto.decrypt(credential.secret)
    except crypto.InvalidToken:
        raise unreadable(credential) from None
    ProviderCredential.objects.filter(pk=credential.pk).update(last_used_at=timezone.now())
    return secret


def credential_secret_for_agent(*, agent_id: int, name: str, provider: str | None = None) -> str:
    """:func:`credential_secret` for a run of the agent with primary key ``agent_id`` (the
    task's agent: a ``call_agent`` child runs another agent than its session's), with the
    credentials of that agent's team (whoever started the run). Sync; the llm runner calls it
    through ``sync_to_async``.

    Raises:
        NotFound, Conflict: as :func:`credential_secret` (an unknown agent is
            ``credential_not_found`` too).
    """
    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None:
        raise NotFound(
            f"No credential named {name!r} is available to this agent.",
            code="credential_not_found",
            details={"name": name},
        )
    return credential_secret(team=agent.team_id, name=name, agent=agent, provider=provider)


# Models ----------------------------------------------------------------------------------------


def _agent_model(agent: Agent) -> dict[str, str] | None:
    model = (agent.spec or {}).get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        return None
    return {"provider": str(model.get("provider") or "openai"), "name": model["name"]}


def model_list(*, user: Any) -> list[dict[str, Any]]:
    """What ``user`` may use, in the OpenAI ``/v1/models`` spirit.

    Returns:
        First one entry per agent the user can use, of every kind
        (``sessions.selectors.agent_list``: those of the user's teams and public ones, not
        deleted; when a slug is taken twice an agent of the user's teams wins over a public
        one, as in ``agent_get``, else the oldest), ordered by slug::

            {"id": slug, "object": "agent", "owned_by": username, "kind", "name",
             "description", "version", "model"?: {"provider", "name"} (llm agents)}

        then one entry per distinct model name across those agents and ``settings.LLM_MODELS``,
        ordered by id::

            {"id": name, "object": "model", "provider", "agents": [slugs], "pricing"?}

        ``provider`` and ``pricing`` come from the catalogue entry when there is one, else the
        provider of the first agent using the model. No ``base_url`` and no key is ever listed.

        Team model access (``providers.access``) narrows both: an agent is left out when a
        model of its spec is not allowed for the team that would run it (the agent's team
        when it is one of the user's, else the user's default team), a catalogue model when
        none of the user's teams may use it. The slug choice above is made first, so a
        refused agent of one's own team is not replaced by a public one of the same slug.
    """
    mine = set(access.team_ids(user))
    agents = agent_list(user=user).select_related("owner").order_by("slug", "created_at")
    usable: dict[str, Agent] = {}
    for agent in agents:
        current = usable.get(agent.slug)
        if current is None or (agent.team_id in mine and current.team_id not in mine):
            usable[agent.slug] = agent
    allowed = model_access.agent_filter(user=user)
    usable = {slug: agent for slug, agent in usable.items() if allowed(agent)}
    listed = model_access.catalogue_filter(user=user)
    catalogue = {entry["id"]: entry for entry in settings.LLM_MODELS if listed(entry["id"])}
    models: dict[str, dict[str, Any]] = {}
    for name, entry in catalogue.items():
        models[name] = {"id": name, "object": "model", "provider": entry["provider"], "agents": []}
        if "pricing" in entry:
            models[name]["pricing"] = dict(entry["pricing"])
    data: list[dict[str, Any]] = []
    for slug in sorted(usable):
        agent = usable[slug]
        entry_: dict[str, Any] = {
            "id": slug, "object": "agent", "owned_by": agent.owner.get_username(),
            "kind": agent.kind, "name": agent.name, "description": agent.description,
            "version": agent.version,
        }  # fmt: skip
        data.append(entry_)
        model = _agent_model(agent) if agent.kind == LLM_KIND else None
        if model is None:
            continue
        entry_["model"] = model
        entry = models.setdefault(
            model["name"],
            {"id": model["name"], "object": "model", "provider": model["provider"], "agents": []},
        )
        entry["agents"].append(slug)
    return data + [models[name] for name in sorted(models)]

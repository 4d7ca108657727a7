"""Reads of the providers app, each scoped to the requesting user (a stranger gets 404).

``credential_secret`` is the one place a stored secret is decrypted; the llm runner calls it.
``model_list`` is ``GET /api/v1/models``: the llm agents a user can use and their models, plus
the configured catalogue (``settings.LLM_MODELS``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from providers import crypto
from providers.models import ProviderCredential
from runtime_project.exceptions import Conflict, NotFound
from sessions.models import Agent
from sessions.selectors import agent_list

LLM_KIND = "llm"  # sessions.runners.llm.runner.LlmRunner.kind


def _owned_by(user: Any) -> Q:
    """Credentials ``user`` may manage (a ``team`` owner would add its members here)."""
    return Q(owner=user)


def credential_list(*, user: Any) -> QuerySet[ProviderCredential]:
    """The user's credentials, ordered by name (``agent`` loaded)."""
    return (
        ProviderCredential.objects.filter(_owned_by(user)).select_related("agent").order_by("name")
    )


def credential_get(*, user: Any, uuid: Any) -> ProviderCredential:
    """One of the user's credentials by its public id.

    Raises:
        NotFound: not a UUID, unknown, or another user's credential (``credential_not_found``).
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
    return credential


def unreadable(credential: ProviderCredential) -> Conflict:
    """The error for a credential no configured key decrypts (keys changed or lost)."""
    return Conflict(
        f"The credential {credential.name!r} cannot be decrypted with the server's keys "
        "(CREDENTIALS_ENCRYPTION_KEYS or SECRET_KEY changed); store its secret again.",
        code="credential_unreadable",
        details={"name": credential.name},
    )


def credential_secret(
    *, owner: Any, name: str, agent: Agent | None, provider: str | None = None
) -> str:
    """The decrypted secret of ``owner``'s credential ``name`` for a run of ``agent``; records
    ``last_used_at``. Sync (ORM): call it through ``sync_to_async`` from async code.

    A credential restricted to an agent is only usable by that agent. ``owner`` is a user (or
    its pk): the llm runner passes the agent's owner, so a public agent's runs use the
    credentials of whoever wrote the agent, never the caller's (an agent's author picks its
    ``base_url`` and must not be able to send the caller's keys there).

    Args:
        provider: when given, the wire format the key will be sent to; a credential stored for
            another provider is refused (an Anthropic key is not sent to an OpenAI endpoint).

    Raises:
        NotFound: ``credential_not_found``: no such credential of the owner, or it is restricted
            to another agent (details ``{"name"}``).
        Conflict: ``credential_provider_mismatch`` (details ``{"name", "provider",
            "expected"}``) or ``credential_unreadable`` (no configured key decrypts it).
    """
    credential = ProviderCredential.objects.filter(_owned_by(owner), name=name).first()
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
    credentials of that agent's owner. Sync; the llm runner calls it through ``sync_to_async``.

    Raises:
        NotFound, Conflict: as :func:`credential_secret`.
    """
    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None:
        raise NotFound(
            f"No credential named {name!r} is available to this agent.",
            code="credential_not_found",
            details={"name": name},
        )
    return credential_secret(owner=agent.owner_id, name=name, agent=agent, provider=provider)


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
        (``sessions.selectors.agent_list``: own and public, not deleted; when a slug is taken
        twice the user's own agent wins, as in ``agent_get``), ordered by slug::

            {"id": slug, "object": "agent", "owned_by": username, "kind", "name",
             "description", "version", "model"?: {"provider", "name"} (llm agents)}

        then one entry per distinct model name across those agents and ``settings.LLM_MODELS``,
        ordered by id::

            {"id": name, "object": "model", "provider", "agents": [slugs], "pricing"?}

        ``provider`` and ``pricing`` come from the catalogue entry when there is one, else the
        provider of the first agent using the model. No ``base_url`` and no key is ever listed.
    """
    agents = agent_list(user=user).select_related("owner").order_by("slug", "created_at")
    usable: dict[str, Agent] = {}
    for agent in agents:
        current = usable.get(agent.slug)
        if current is None or (agent.owner_id == user.pk and current.owner_id != user.pk):
            usable[agent.slug] = agent
    catalogue = {entry["id"]: entry for entry in settings.LLM_MODELS}
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

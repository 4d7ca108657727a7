"""Team model access (issue 10, item 6): which model names a team's runs may use.

A team's policy is its :class:`~providers.models.TeamModelAccess` row (``mode`` ``all`` or
``listed`` with ``allowed_models``, exact names or ``fnmatch`` globs such as ``gpt-4o*``,
matched case-sensitively); a team without a row follows ``settings.TEAM_MODELS_DEFAULT`` (a
list of names/globs, or a comma-separated string; unset or empty: every model, which is how
the server behaved before policies existed).

Which team's policy applies — "the team that would run it":

- a run (task) uses the policy of its **session's team** (``session.team``): for the caller's
  own agents that is the agent's team; a session on another team's public agent belongs to the
  caller's team, so that team's policy applies, never the author's;
- an agent's spec (create/update) is checked against the **agent's team**;
- listings (``GET /api/v1/models``, ``GET /v1/models``) show an agent when its models are
  allowed for the agent's team if it is one of the caller's teams, else (a public agent of
  another team) for the caller's default team (the API key's team, else the personal team),
  where a session on it would be opened by default; a catalogue model is listed when at least
  one of the caller's teams may use it.

The model names of a spec are ``spec.model.name`` (llm, workflow, python) and the
``model.name`` of every workflow ``llm_prompt`` component. The effective name of a run is
the most specific of task ``config.model.name`` → session ``metadata.model_config.name`` →
the spec's (as ``sessions.runners.llm.runner.model_overrides`` resolves it).

Refusals are ``Forbidden`` (HTTP 403) with code ``model_not_allowed`` and details
``{"model", "team"}`` (the team's slug): the request is well formed, the team's policy forbids
it. At run time the same error fails the task before any model call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from django.conf import settings

from accounts import access
from accounts.models import Team
from providers.models import ModelAccessMode, TeamModelAccess
from runtime_project.db import db_call
from runtime_project.exceptions import Forbidden, InvalidInput

MAX_PATTERNS = 200
MAX_PATTERN_CHARS = 200
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ModelPolicy:
    """A team's effective policy. ``source``: ``team`` (its own row) or ``default`` (the
    server's ``TEAM_MODELS_DEFAULT``)."""

    mode: str
    patterns: tuple[str, ...]
    source: str

    def allows(self, name: str) -> bool:
        """Whether the model ``name`` may be used (``fnmatch`` globs, case-sensitive)."""
        if self.mode == ModelAccessMode.ALL:
            return True
        return any(fnmatchcase(name, pattern) for pattern in self.patterns)


def default_policy() -> ModelPolicy:
    """The policy of a team without its own: ``TEAM_MODELS_DEFAULT`` (a list or a comma
    list; ``*`` or unset: every model)."""
    raw: Any = getattr(settings, "TEAM_MODELS_DEFAULT", None) or []
    if isinstance(raw, str):
        raw = raw.split(",")
    patterns = tuple(dict.fromkeys(str(p).strip() for p in raw if str(p).strip()))
    if not patterns or "*" in patterns:
        return ModelPolicy(ModelAccessMode.ALL, (), "default")
    return ModelPolicy(ModelAccessMode.LISTED, patterns, "default")


def _of_row(row: TeamModelAccess) -> ModelPolicy:
    return ModelPolicy(row.mode, tuple(row.allowed_models or ()), "team")


def _team_pk(team: Any) -> Any:
    return getattr(team, "pk", team)


def team_model_policy(*, team: Any) -> ModelPolicy:
    """The effective policy of ``team`` (a Team, its pk, or ``None``: the server default)."""
    if team is None:
        return default_policy()
    row = TeamModelAccess.objects.filter(team_id=_team_pk(team)).first()
    return _of_row(row) if row is not None else default_policy()


def _policies(team_pks: Iterable[Any]) -> dict[Any, ModelPolicy]:
    """``{team pk: policy}`` for ``team_pks`` in one query."""
    pks = set(team_pks)
    found = {row.team_id: _of_row(row) for row in TeamModelAccess.objects.filter(team_id__in=pks)}
    fallback = default_policy()
    return {pk: found.get(pk, fallback) for pk in pks}


def clean_allowed_models(value: Any) -> list[str]:
    """``value`` checked as a list of model names or globs, stripped and de-duplicated (order
    kept).

    Raises:
        InvalidInput: not a list of non-empty strings without whitespace or control characters,
            an entry over 200 characters, or more than 200 entries (``details.fields``).
    """

    def bad(message: str) -> InvalidInput:
        return InvalidInput(message, details={"fields": {"allowed_models": [message]}})

    if not isinstance(value, list):
        raise bad("allowed_models must be a list of model names or glob patterns.")
    if len(value) > MAX_PATTERNS:
        raise bad(f"allowed_models may hold at most {MAX_PATTERNS} entries.")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise bad("Every entry must be a non-empty string.")
        item = item.strip()
        if len(item) > MAX_PATTERN_CHARS or _BAD_CHARS.search(item):
            raise bad(
                f"Entries are at most {MAX_PATTERN_CHARS} characters, without whitespace or "
                "control characters."
            )
        if item not in out:
            out.append(item)
    return out


# Writes ----------------------------------------------------------------------------------------


def team_models_set(
    *, team: Team, user: Any, mode: str, allowed_models: list[str]
) -> TeamModelAccess:
    """Give ``team`` its own policy, replacing any earlier one. The caller checks that
    ``user`` may (an admin or owner of ``team``).

    Args:
        mode: ``all`` (every model) or ``listed`` (only names matching ``allowed_models``).
        allowed_models: names or globs (kept with ``all`` too, but unused then).

    Raises:
        InvalidInput: unknown ``mode`` or a malformed ``allowed_models`` (``details.fields``).
    """
    if mode not in ModelAccessMode.values:
        message = f"mode must be one of {ModelAccessMode.values}."
        raise InvalidInput(message, details={"fields": {"mode": [message]}})
    patterns = clean_allowed_models(allowed_models)
    # update_or_create locks the row and, on a concurrent first write, re-reads it.
    row, _ = TeamModelAccess.objects.update_or_create(
        team=team,
        defaults={
            "mode": mode,
            "allowed_models": patterns,
            "updated_by": user if getattr(user, "is_authenticated", False) else None,
        },
    )
    return row


def team_models_reset(*, team: Team) -> None:
    """Drop ``team``'s own policy: it follows the server default again."""
    TeamModelAccess.objects.filter(team=team).delete()


# Model names -----------------------------------------------------------------------------------


def _name_of(model: Any) -> str | None:
    if isinstance(model, dict) and isinstance(model.get("name"), str) and model["name"]:
        return str(model["name"])
    return None


def _component_models(node: Any) -> Iterator[str]:
    """``model.name`` of every ``llm_prompt`` component anywhere in a workflow spec (loop
    bodies included)."""
    if isinstance(node, dict):
        if node.get("type") == "llm_prompt" and (name := _name_of(node.get("model"))):
            yield name
        for value in node.values():
            yield from _component_models(value)
    elif isinstance(node, list):
        for value in node:
            yield from _component_models(value)


def spec_model_names(spec: Any) -> list[str]:
    """The distinct model names an agent spec names (``spec.model.name`` and its workflow
    ``llm_prompt`` components'), in order; ``[]`` for a spec without models."""
    if not isinstance(spec, dict):
        return []
    names = [n for n in [_name_of(spec.get("model"))] if n]
    names.extend(_component_models({k: v for k, v in spec.items() if k != "model"}))
    return list(dict.fromkeys(names))


def _override_name(session: Any, config: dict[str, Any]) -> str | None:
    """The run's model name override: task ``config.model.name``, else the session's
    ``metadata.model_config.name``."""
    name = _name_of(config.get("model"))
    if name is None:
        name = _name_of((getattr(session, "metadata", None) or {}).get("model_config"))
    return name


# Refusals --------------------------------------------------------------------------------------


def not_allowed(*, name: str, team: Any) -> Forbidden:
    """The ``model_not_allowed`` error (403) for ``name`` in ``team`` (a Team or its pk)."""
    if not isinstance(team, Team):
        team = Team.objects.filter(pk=team).only("slug").first()
    slug = team.slug if team is not None else None
    return Forbidden(
        f"The model {name!r} is not allowed for the team {slug!r}. A team admin can change "
        f"the list with PUT /api/v1/teams/{slug}/models.",
        code="model_not_allowed",
        details={"model": name, "team": slug},
    )


def model_check(*, team: Any, name: str) -> None:
    """Raises ``Forbidden`` ``model_not_allowed`` unless ``team`` may use the model ``name``."""
    if not team_model_policy(team=team).allows(name):
        raise not_allowed(name=name, team=team)


def agent_model_check(*, team: Any, spec: Any) -> None:
    """Every model an agent spec names must be allowed for the agent's ``team`` (called by
    ``agent_create`` and, on spec changes, ``agent_update``).

    Raises:
        Forbidden: ``model_not_allowed`` (details ``{"model", "team"}``), the first refused.
    """
    names = spec_model_names(spec)
    if not names:
        return
    policy = team_model_policy(team=team)
    for name in names:
        if not policy.allows(name):
            raise not_allowed(name=name, team=team)


def session_model_check(*, team: Any, metadata: Any) -> None:
    """A session's ``metadata.model_config.name`` must be allowed for the session's team
    (``session_create``, and ``session_update`` when the metadata changes).

    Raises:
        Forbidden: ``model_not_allowed``.
    """
    if isinstance(metadata, dict) and (name := _name_of(metadata.get("model_config"))):
        model_check(team=team, name=name)


def task_model_check(*, session: Any, user: Any, config: dict[str, Any]) -> None:
    """The model(s) a new task on ``session`` would use must be allowed for the session's
    team (called by ``task_create`` through ``task_config_check``): the override name (task
    ``config.model.name``, else session ``metadata.model_config.name``) when there is one,
    else every model the pinned agent spec names. ``user`` is unused: the policy is the
    team's, whoever asks.

    Raises:
        Forbidden: ``model_not_allowed`` (details ``{"model", "team"}``).
    """
    team = session.team_id
    name = _override_name(session, config)
    if name is not None:
        model_check(team=team, name=name)
        return
    agent = getattr(session, "agent", None)
    agent_model_check(team=team, spec=getattr(agent, "spec", None))


async def model_run_check(ctx: Any, model: dict[str, Any]) -> None:
    """At run time (the llm runner, a workflow ``llm_prompt``): the resolved ``model`` must
    be allowed for the session's team, whose policy may have changed since the agent or the
    task was created. Raising fails the task with ``model_not_allowed`` before any model call.

    Raises:
        Forbidden: ``model_not_allowed``.
    """

    name = _name_of(model)
    session = getattr(ctx, "session", None)
    if name is not None and session is not None:
        await db_call(model_check)(team=session.team_id, name=name)


# Listings --------------------------------------------------------------------------------------


def _default_team_pk(user: Any) -> Any:
    from accounts.selectors import default_team
    from runtime_project.exceptions import NotFound

    try:
        return default_team(user=user).pk
    except NotFound:
        return None


def agent_filter(*, user: Any) -> Callable[[Any], bool]:
    """A predicate "may ``user`` list this agent": its spec's models are allowed for the team
    that would run it (the agent's team when it is one of ``user``'s teams, else ``user``'s
    default team). Policies are read once per call of this function."""
    mine = set(access.team_ids(user))
    fallback = _default_team_pk(user)
    policies = _policies([*mine, fallback])
    default = policies.get(None, default_policy())

    def allowed(agent: Any) -> bool:
        names = spec_model_names(agent.spec)
        if not names:
            return True
        team = agent.team_id if agent.team_id in mine else fallback
        policy = policies.get(team, default)
        return all(policy.allows(name) for name in names)

    return allowed


def catalogue_filter(*, user: Any) -> Callable[[str], bool]:
    """A predicate "may ``user`` list this catalogue model": at least one of ``user``'s teams
    (the API key's team only, for a team key) may use it; a user in no team sees what the
    server default allows."""
    policies = list(_policies(access.team_ids(user)).values()) or [default_policy()]
    return lambda name: any(policy.allows(name) for policy in policies)

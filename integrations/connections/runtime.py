"""Connections used by runs: a request of a workflow ``http_request`` component (``"connection":
"<name>"``) or of the llm ``http_fetch`` tool (``connection``, limited to the names listed in
``spec.tool_options.http_fetch.connections``) gets ``Authorization: Bearer <token>``.

Whose token: the connection of the user who created the task, at the provider ``<name>`` of
the session's team. Only agents of the session's own team may use it: a public agent of
another team, run in your session, cannot send your tokens anywhere (its author chose the
URLs). The token goes only to the provider's ``api_hosts`` (default: the token URL's host);
``runtime_project.outbound`` drops the header when a redirect leaves the origin.

The token never shows: it is masked (``[secret:connection:<name>]``) in every event the task
emits from then on (the run's event buffer masker is extended in place), in tool results sent
to the model (``ctx.mask``), in the workflow's result and error, and in this process's log
records while the run lives (``sessions.services.masking`` registry).
"""

from __future__ import annotations

import weakref
from typing import Any

import httpx

from accounts.models import Membership
from integrations.connections import selectors, tokens
from runtime_project.exceptions import Forbidden, InvalidInput, OutboundRefused
from sessions.services import masking


def _host_matches(host: str, patterns: list[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns if p)


def allowed_hosts(provider: Any) -> list[str]:
    """Where tokens of ``provider`` may be sent: its ``api_hosts``, else its token URL's host."""
    if provider.api_hosts:
        return [str(h).lower() for h in provider.api_hosts]
    return [httpx.URL(provider.token_url).host.lower()]


def resolve(*, task_id: int, name: str, host: str) -> str:
    """The access token of connection ``name`` for a request of task ``task_id`` to ``host``.
    Sync (ORM, maybe a refresh over HTTP).

    Raises:
        Forbidden: ``connection_not_allowed``: the task's agent is not of the session's team.
        OutboundRefused: ``host`` is not one of the provider's API hosts
            (``details.reason == "not_connection_host"``).
        NotFound, Conflict, ApplicationError: as ``tokens.connection_token``.
    """
    from sessions.models import Task

    task = Task.objects.select_related("agent", "session").get(pk=task_id)
    if task.agent.team_id != task.session.team_id:
        raise Forbidden(
            "Only agents of the session's team may use its connections.",
            code="connection_not_allowed",
            details={"connection": name},
        )
    user_id = task.created_by_id
    member = user_id is not None and (
        Membership.objects.filter(team_id=task.session.team_id, user_id=user_id).exists()
    )
    if user_id is None or not member:
        raise tokens.not_found(name, "The task's user (a member of the team) has no connection.")
    provider = selectors.team_provider(team=task.session.team_id, name=name)
    if provider is not None and not _host_matches(host, hosts := allowed_hosts(provider)):
        raise OutboundRefused(
            f"The connection {name!r} may only be used with {', '.join(hosts)}, not {host!r}.",
            details={"host": host, "reason": "not_connection_host", "allowed": hosts},
        )
    return tokens.connection_token(user=user_id, team=task.session.team_id, name=name)


def _mask_from_now_on(ctx: Any, label: str, token: str) -> None:
    """Mask ``token`` in everything the run emits from now on and in this process's logs."""
    masker = ctx.events.masker  # shared with the buffer's stream masker: extend it in place
    if any(value == token for value, _ in masker.patterns):
        return
    masker.add(label, token)
    if ctx.session is not None:
        handle = masking.register(ctx.session.pk, {label: token})
        # Unregistered when the run's context goes away (the run is over).
        weakref.finalize(ctx, masking.unregister, handle)


async def authorize(ctx: Any, *, name: str, url: str, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus ``Authorization: Bearer <token>`` of connection ``name`` for a request
    of ``ctx``'s task to ``url``.

    Raises:
        InvalidInput: ``headers`` already has an ``Authorization`` header.
        Forbidden, OutboundRefused, NotFound, Conflict, ApplicationError: see :func:`resolve`.
    """
    from sessions.execution import db_call

    if any(k.lower() == "authorization" for k in headers):
        raise InvalidInput(
            "Give either a connection or an Authorization header, not both.",
            details={"connection": name},
        )
    if ctx.task is None:
        raise tokens.not_found(name, "Connections are only available to tasks.")
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, TypeError):
        host = ""
    token = await db_call(resolve)(task_id=ctx.task.pk, name=name, host=host)
    _mask_from_now_on(ctx, f"connection:{name}", token)
    return {**headers, "Authorization": f"Bearer {token}"}

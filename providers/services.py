"""Writes of stored provider credentials: create, update (rotate the secret or change the agent),
delete, and re-encrypt everything under the first configured key.

A credential belongs to a team (names are unique per team) and may be restricted to one live
agent of that team. Who may call these (team admins) is checked by the caller
(``providers.selectors.credential_get(for_write=True)``, ``accounts.selectors.team_for_write``).

Secrets are encrypted before they reach the database (``providers.crypto``) and never appear in
a return value, an error message or a log line: errors name the field, never its value.
"""

from __future__ import annotations

import re
from types import EllipsisType
from typing import Any

from django.db import IntegrityError, transaction

from accounts.selectors import default_team
from providers import crypto
from providers.models import CredentialProvider, ProviderCredential
from providers.selectors import unreadable
from runtime_project.exceptions import Conflict, InvalidInput, NotFound
from sessions.models import Agent

SECRET_MAX_BYTES = 4096
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # a slug, at most 64 characters
HINT_MIN_CHARS = 12  # shorter secrets get no hint: four characters would give away too much
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _field_error(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, details={"fields": {field: [message]}})


def clean_secret(secret: Any) -> str:
    """``secret`` without surrounding whitespace, checked (shared with the admin form).

    Raises:
        InvalidInput: not a string, empty, longer than 4 KiB (UTF-8), or holding control
            characters (newlines would break the HTTP header it is sent in). Details
            ``{"fields": {"secret": [message]}}``; the message never includes the value.
    """
    if not isinstance(secret, str):
        raise _field_error("secret", "The secret must be a string.")
    secret = secret.strip()
    if not secret:
        raise _field_error("secret", "The secret may not be empty.")
    if len(secret.encode()) > SECRET_MAX_BYTES:
        raise _field_error("secret", f"The secret may not be longer than {SECRET_MAX_BYTES} bytes.")
    if _CONTROL.search(secret):
        raise _field_error("secret", "The secret may not contain control characters.")
    return secret


def hint_of(secret: str) -> str:
    """``…`` and the secret's last four characters (just ``…`` for a short secret)."""
    return "…" + secret[-4:] if len(secret) >= HINT_MIN_CHARS else "…"


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _field_error(
            "name",
            "The name must be a slug: 1-64 letters, digits, '-' or '_', starting with a letter "
            "or digit.",
        )
    return name


def _check_provider(provider: Any) -> str:
    if provider not in CredentialProvider.values:
        raise _field_error("provider", f"The provider must be one of {CredentialProvider.values}.")
    return str(provider)


def _check_agent(team_id: int, agent: Agent | None) -> Agent | None:
    """A credential may only be restricted to a live agent of its own team.

    Raises:
        NotFound: ``agent`` is deleted or of another team (public or not).
    """
    if agent is not None and (agent.team_id != team_id or agent.deleted_at is not None):
        raise NotFound("Agent not found.", details={"id": str(agent.uuid)})
    return agent


def set_secret(credential: ProviderCredential, secret: str) -> None:
    """Put ``secret`` (already cleaned) into ``credential``, encrypted, with its hint; the caller
    saves (the admin form uses it too)."""
    credential.secret = crypto.encrypt(secret)
    credential.hint = hint_of(secret)


@transaction.atomic
def credential_create(
    *,
    owner: Any,
    team: Any | None = None,
    name: str,
    provider: str,
    secret: str,
    agent: Agent | None = None,
) -> ProviderCredential:
    """Store a new credential of ``team`` (default: ``owner``'s default team), encrypted under
    the first configured key; ``owner`` is the user storing it. The caller checks that
    ``owner`` may (an admin of ``team``).

    Args:
        agent: restrict the credential to this agent of ``team`` (``None``: any agent of the
            team may use it).

    Raises:
        InvalidInput: bad ``name``, ``provider`` or ``secret`` (``details.fields``).
        NotFound: ``agent`` is not a live agent of ``team``; ``no_team``: no ``team`` given
            and ``owner`` belongs to none.
        Conflict: ``credential_name_taken``: the team already has a credential of that name.
    """
    name = _check_name(name)
    provider = _check_provider(provider)
    secret = clean_secret(secret)
    if team is None:
        team = default_team(user=owner)
    _check_agent(team.pk, agent)
    credential = ProviderCredential(
        owner=owner, team=team, name=name, provider=provider, agent=agent
    )
    set_secret(credential, secret)
    taken = Conflict(
        f"The team already has a credential called {name!r}.",
        code="credential_name_taken",
        details={"name": name},
    )
    if ProviderCredential.objects.filter(team=team, name=name).exists():
        raise taken
    try:
        with transaction.atomic():
            credential.save()
    except IntegrityError:  # a concurrent create of the same name
        raise taken from None
    return credential


@transaction.atomic
def credential_update(
    *,
    credential: ProviderCredential,
    secret: str | None = None,
    agent: Agent | EllipsisType | None = ...,
) -> ProviderCredential:
    """Rotate the secret and/or change the agent restriction (``agent=None`` lifts it; ``...``
    leaves it). The stored token is always re-encrypted under the first configured key, so any
    update also completes a key rotation for this credential.

    Raises:
        InvalidInput: bad ``secret``.
        NotFound: ``agent`` is not a live agent of the credential's team.
        Conflict: ``credential_unreadable``: no new secret given and the stored one cannot be
            decrypted any more (store a new secret).
    """
    credential = ProviderCredential.objects.select_for_update().get(pk=credential.pk)
    if secret is not None:
        set_secret(credential, clean_secret(secret))
    else:
        try:
            credential.secret = crypto.rotate(credential.secret)
        except crypto.InvalidToken:
            raise unreadable(credential) from None
    if not isinstance(agent, EllipsisType):
        credential.agent = _check_agent(credential.team_id, agent)
    credential.save()
    return credential


def credential_delete(*, credential: ProviderCredential) -> None:
    """Delete the credential for good (agents that reference it fail with
    ``credential_not_found`` on their next run)."""
    credential.delete()


def credentials_reencrypt_all() -> tuple[int, int]:
    """Re-encrypt every stored secret under the first configured key (the middle step of a key
    rotation; ``manage.py rotate_credential_keys``).

    Returns:
        ``(re-encrypted, unreadable)``: unreadable ones are left as they are.
    """
    done = failed = 0
    for pk in ProviderCredential.objects.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            row = ProviderCredential.objects.select_for_update().filter(pk=pk).first()
            if row is None:
                continue
            try:
                token = crypto.rotate(row.secret)
            except crypto.InvalidToken:
                failed += 1
                continue
            ProviderCredential.objects.filter(pk=pk).update(secret=token)
            done += 1
    return done, failed

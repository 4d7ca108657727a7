"""Team and session secrets: services and selectors (values are write-only).

A :class:`accounts.models.Secret` belongs to a team (``session`` empty) or to one session of
that team; a session secret wins over the team secret of the same name. The value is stored
Fernet-encrypted with the key ring of ``providers.crypto`` (``CREDENTIALS_ENCRYPTION_KEYS``,
rotation with ``manage.py rotate_secret_keys``). The encrypted plaintext starts with a header
naming the row (``v1:<uuid>:<name>``) that is checked on decryption, so a ciphertext copied into
another row (another team's) does not open there.

Nothing here returns a value except :func:`secrets_for_run`, which the executor calls to inject
secrets into a sandbox and to mask them; nothing logs one. Role checks are the callers' (the
API views use the team and session selectors); the ``*_list``/``*_get`` selectors here take the
already checked team or session.

Names are environment-variable names (``[A-Z_][A-Z0-9_]*``, at most 128 characters); values
are non-empty text of at most 64 KiB (UTF-8) without NUL characters.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import Secret, SecretScope, Team
from providers import crypto
from runtime_project.exceptions import InvalidInput, NotFound, ServiceUnavailable

logger = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
NAME_MAX_CHARS = 128
VALUE_MAX_BYTES = 64 * 1024
_NAME_RE = re.compile(NAME_PATTERN)
_HEADER = "v1"


class SecretNotFound(NotFound):
    """No secret of that name (in that team or session); ``details.name`` names it."""

    code = "secret_not_found"


class SecretUnreadable(ServiceUnavailable):
    """A stored secret no configured key opens (keys lost or changed): store it again."""

    code = "secret_unreadable"


@dataclass(frozen=True)
class SecretInfo:
    """What the API shows of a secret: never its value.

    ``scope`` is ``team`` or ``session``; ``created_by`` a username or None.
    """

    name: str
    scope: str
    created_at: datetime
    updated_at: datetime
    created_by: str | None


def validate_name(name: Any) -> str:
    """``name`` if it is an environment-variable name.

    Raises:
        InvalidInput: ``details.fields.name`` says why.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > NAME_MAX_CHARS:
        raise InvalidInput(
            "A secret name must look like an environment variable: A-Z, 0-9 and _, not "
            f"starting with a digit, at most {NAME_MAX_CHARS} characters.",
            details={"fields": {"name": [f"must match {NAME_PATTERN}"]}},
        )
    return name


def validate_value(value: Any) -> str:
    """``value`` if it is storable (never echoed in the error).

    Raises:
        InvalidInput: empty, not text, over 64 KiB, or contains a NUL character.
    """
    if not isinstance(value, str) or not value:
        problem = "must be a non-empty string"
    elif "\x00" in value:
        problem = "must not contain NUL characters"
    elif len(value.encode()) > VALUE_MAX_BYTES:
        problem = f"must be at most {VALUE_MAX_BYTES} bytes (UTF-8)"
    else:
        return value
    raise InvalidInput(f"The secret value {problem}.", details={"fields": {"value": [problem]}})


def _header(row: Secret) -> str:
    return f"{_HEADER}:{row.uuid}:{row.name}"


def _seal(row: Secret, value: str) -> str:
    return crypto.encrypt(f"{_header(row)}\n{value}")


def _open(row: Secret) -> str:
    """The value of ``row``. Raises crypto.InvalidToken (or ValueError for a bad key ring)."""
    header, _, value = crypto.decrypt(row.ciphertext).partition("\n")
    if header != _header(row):
        raise crypto.InvalidToken
    return value


def _rows(team: Team, session: Any) -> Any:
    qs = Secret.objects.filter(team=team)
    return qs.filter(session__isnull=True) if session is None else qs.filter(session=session)


def _info(row: Secret) -> SecretInfo:
    return SecretInfo(
        name=row.name,
        scope=SecretScope.TEAM if row.session_id is None else SecretScope.SESSION,
        created_at=row.created_at,
        updated_at=row.updated_at,
        created_by=row.created_by.get_username() if row.created_by else None,
    )


def secret_set(
    *, team: Team, session: Any = None, name: str, value: str, user: Any = None
) -> tuple[Secret, bool]:
    """Create or replace the secret ``name`` of ``team`` (or of ``session``, which must belong
    to ``team``); returns ``(secret, created)``. A replaced secret keeps its creator.

    Raises:
        InvalidInput: bad name or value, or a session of another team.
    """
    validate_name(name)
    validate_value(value)
    if session is not None and session.team_id != team.pk:
        raise InvalidInput("The session does not belong to this team.")
    for attempt in range(2):
        try:
            with transaction.atomic():
                row = _rows(team, session).select_for_update().filter(name=name).first()
                created = row is None
                if row is None:
                    creator = user if getattr(user, "is_authenticated", False) else None
                    row = Secret(team=team, session=session, name=name, created_by=creator)
                row.ciphertext = _seal(row, value)
                row.save()
                return row, created
        except IntegrityError:
            if attempt:  # a concurrent create of the same name won twice: give up
                raise
    raise AssertionError("unreachable")


def secret_delete(*, team: Team, session: Any = None, name: str) -> Secret:
    """Delete the secret ``name`` of ``team`` (or of ``session``); returns the deleted row.

    Raises:
        SecretNotFound: there is none.
    """
    row = secret_get(team=team, session=session, name=name)
    row.delete()
    return row


def secret_get(*, team: Team, session: Any = None, name: str) -> Secret:
    """The row of secret ``name`` of ``team`` (or of ``session``), without decrypting it.

    Raises:
        SecretNotFound: there is none.
    """
    row = _rows(team, session).select_related("created_by").filter(name=name).first()
    if row is None:
        raise SecretNotFound(f"No secret named {name!r}.", details={"name": str(name)[:200]})
    return row


def secret_info(row: Secret) -> SecretInfo:
    """What the API may show of ``row``."""
    return _info(row)


def secret_list(*, team: Team, session: Any = None) -> list[SecretInfo]:
    """Names, scopes and timestamps (never values), by name.

    For a team: its team secrets. For a session: what its runs see, one entry per name: the
    session's secrets and the team secrets they do not override (``scope`` tells which).
    """
    own = [_info(r) for r in _rows(team, session).select_related("created_by")]
    if session is None:
        return own
    names = {i.name for i in own}
    inherited = [
        _info(r) for r in _rows(team, None).select_related("created_by") if r.name not in names
    ]
    return sorted(own + inherited, key=lambda i: i.name)


def secrets_for_run(session: Any, *, require: Iterable[str] = ()) -> dict[str, str]:
    """``{name: value}`` of every secret a run on ``session`` may use: the team's secrets,
    overridden by the session's. Secrets no key opens are left out (and logged by name).

    Raises:
        SecretNotFound: a name in ``require`` does not exist (``details.name``: the first,
            ``details.names``: all missing).
        SecretUnreadable: a name in ``require`` exists but cannot be decrypted.
    """
    rows = Secret.objects.filter(team_id=session.team_id).filter(
        Q(session__isnull=True) | Q(session_id=session.pk)
    )
    values: dict[str, str] = {}
    unreadable: set[str] = set()
    for row in sorted(rows, key=lambda r: r.session_id is not None):  # team first
        try:
            values[row.name] = _open(row)
            unreadable.discard(row.name)
        except (crypto.InvalidToken, ValueError):
            logger.warning("secret %s (%s) cannot be decrypted", row.name, row.uuid)
            values.pop(row.name, None)  # an unreadable session secret hides the team's too
            unreadable.add(row.name)
    missing = [n for n in dict.fromkeys(require) if n not in values]
    bad = [n for n in missing if n in unreadable]
    if bad:
        raise SecretUnreadable(
            f"The secret {bad[0]!r} cannot be decrypted (encryption keys changed); store it again.",
            details={"name": bad[0], "names": bad},
        )
    if missing:
        raise SecretNotFound(
            f"The agent needs the secret {missing[0]!r}, which neither the session nor its "
            "team has.",
            details={"name": missing[0], "names": missing},
        )
    return values


def secrets_rotate() -> tuple[int, list[str]]:
    """Re-encrypt every secret under the first configured key (after a new key was put first
    in ``CREDENTIALS_ENCRYPTION_KEYS``); returns ``(rotated, uuids of unreadable rows)``."""
    rotated, unreadable = 0, []
    for row in Secret.objects.only("id", "uuid", "ciphertext").iterator():
        try:
            token = crypto.rotate(row.ciphertext)
        except crypto.InvalidToken:
            unreadable.append(str(row.uuid))
            continue
        Secret.objects.filter(pk=row.pk).update(ciphertext=token)
        rotated += 1
    return rotated, unreadable

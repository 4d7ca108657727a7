"""A valid access token of a user's connection, for a run: :func:`connection_token`.

The token is refreshed (RFC 6749 §6) when it expires within
``OAUTH_CONNECTIONS_REFRESH_LEEWAY_S``. Refreshes of one connection never race: a
per-connection lock serialises them inside a process, and on PostgreSQL the row is locked
(``SELECT … FOR UPDATE``) for the duration of the refresh, so workers of several processes
queue too; whoever comes second finds the new token and uses it without calling the provider
(which matters when the provider rotates refresh tokens and treats the reuse of an old one as
theft). SQLite (the single-process embedded mode) relies on the process lock: holding its
database-wide write lock across an HTTP call would block every other writer, the token
endpoint itself when this server is the provider.

Errors (``ApplicationError``, shown to the run, never with a token):
``connection_not_found`` (404: no provider of that name in the team, or the user never
connected / revoked), ``connection_expired`` (409: expired without a refresh token, or the
provider refused the refresh, e.g. ``invalid_grant``; the user must connect again),
``connection_refresh_failed`` (502: the provider could not be reached or failed; try later),
``connection_unreadable`` (409), ``connections_disabled`` (503).
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from integrations.connections import oauth, selectors, services
from integrations.connections.models import ConnectionStatus, OAuthConnection
from providers import crypto
from runtime_project.exceptions import ApplicationError, Conflict, NotFound, ServiceUnavailable

# Provider errors that mean the grant itself is gone (RFC 6749 §5.2): connect again.
FATAL_ERRORS = frozenset({"invalid_grant", "unauthorized_client", "invalid_client"})

_locks_guard = threading.Lock()
_locks: dict[int, threading.Lock] = {}


def _lock(pk: int) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(pk, threading.Lock())


def not_found(name: str, message: str) -> NotFound:
    return NotFound(message, code="connection_not_found", details={"connection": name})


def expired(name: str, message: str) -> Conflict:
    return Conflict(message, code="connection_expired", details={"connection": name})


def _connect_hint(name: str) -> str:
    return f"connect it at /oauth/connect/{name}"


def _needs_renewal(name: str) -> Conflict:
    """The connection is marked ``error`` (its provider refused a refresh): connect again."""
    return expired(name, f"The connection {name!r} needs to be renewed; " + _connect_hint(name))


def _fresh(row: OAuthConnection) -> bool:
    """Whether the stored access token is usable for at least the leeway (a token without a
    lifetime is used until the provider refuses it)."""
    if row.expires_at is None:
        return True
    leeway = dt.timedelta(seconds=int(settings.OAUTH_CONNECTIONS_REFRESH_LEEWAY_S))
    return bool(row.expires_at > timezone.now() + leeway)


def _decrypt(row: OAuthConnection, value: str, name: str) -> str:
    try:
        return crypto.decrypt(value)
    except crypto.InvalidToken:
        raise services.unreadable("token", name) from None


def _usable(row: OAuthConnection, name: str) -> str:
    token = _decrypt(row, row.access_token, name)
    OAuthConnection.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return token


class _Failed(Exception):
    """A refresh failed: ``error`` for the caller, ``updates`` for the row (applied after the
    transaction, which the exception rolls back)."""

    def __init__(self, error: ApplicationError, **updates: Any) -> None:
        super().__init__(error.message)
        self.error, self.updates = error, updates


def _refresh_row(row: OAuthConnection, name: str) -> str:
    """Refresh ``row`` (locked, seen stale) at its provider and store the result.

    Raises:
        _Failed: with the error and what to record on the row.
    """
    if not row.refresh_token:
        message = f"The connection {name!r} expired and has no refresh token; "
        message += _connect_hint(name)
        raise _Failed(expired(name, message), status=ConnectionStatus.ERROR, last_error=message)
    provider = row.provider
    refresh_token = _decrypt(row, row.refresh_token, name)
    try:
        tokens = async_to_sync(oauth.refresh)(
            provider, secret=services.client_secret(provider), refresh_token=refresh_token
        )
    except ApplicationError as exc:  # ProviderError, OutboundRefused, OutboundFailed
        if isinstance(exc, oauth.ProviderError) and exc.details.get("error") in FATAL_ERRORS:
            message = f"The provider refused to refresh {name!r} ({exc.details['error']}); "
            message += _connect_hint(name)
            error = expired(name, message)
            raise _Failed(error, status=ConnectionStatus.ERROR, last_error=message) from None
        message = f"The connection {name!r} could not be refreshed: {exc.message}"
        failed = ApplicationError(
            message, code="connection_refresh_failed", details={"connection": name, **exc.details}
        )
        failed.status_code = 502  # the provider's failure, maybe transient: the row stays active
        raise _Failed(failed, last_error=message[:500]) from None
    row.access_token = crypto.encrypt(tokens.access_token)
    if tokens.refresh_token:  # rotated: the old one is now spent
        row.refresh_token = crypto.encrypt(tokens.refresh_token)
    row.token_type = tokens.token_type
    row.expires_at = tokens.expires_at
    if tokens.scopes is not None:
        row.scopes = tokens.scopes
    row.last_error = ""
    row.refreshed_at = row.last_used_at = timezone.now()
    row.save(
        update_fields=[
            "access_token", "refresh_token", "token_type", "expires_at", "scopes",
            "last_error", "refreshed_at", "last_used_at", "updated_at",
        ]
    )  # fmt: skip
    return tokens.access_token


def _refresh_locked(pk: int, name: str, lock_row: bool) -> str:
    rows = OAuthConnection.objects.select_related("provider")
    row = (rows.select_for_update() if lock_row else rows).get(pk=pk)
    if row.status == ConnectionStatus.ERROR:  # a concurrent caller's refresh was refused
        raise _needs_renewal(name)
    if row.status != ConnectionStatus.ACTIVE or not row.access_token:
        raise not_found(name, f"The connection {name!r} was revoked; " + _connect_hint(name))
    if _fresh(row):  # refreshed meanwhile by another thread or worker
        return _usable(row, name)
    return _refresh_row(row, name)


def _refresh(pk: int, name: str) -> str:
    with _lock(pk):
        try:
            if db_connection.features.has_select_for_update:
                with transaction.atomic():
                    return _refresh_locked(pk, name, lock_row=True)
            return _refresh_locked(pk, name, lock_row=False)
        except _Failed as failed:
            updates = {**failed.updates, "updated_at": timezone.now()}
            OAuthConnection.objects.filter(pk=pk).update(**updates)
            raise failed.error from None


def connection_token(*, user: Any, team: Any, name: str) -> str:
    """A valid access token of ``user``'s connection to the provider ``name`` of ``team`` (a
    Team or its pk), refreshed first when it is about to expire. Sync (ORM and, for a refresh,
    HTTP through the outbound guard): async code calls it through ``sync_to_async``.

    Raises:
        NotFound, Conflict, ApplicationError, ServiceUnavailable: see the module docstring.
    """
    if not settings.OAUTH_CONNECTIONS_ENABLED:
        raise ServiceUnavailable(
            "OAuth connections are disabled on this server (OAUTH_CONNECTIONS_ENABLED).",
            code="connections_disabled",
        )
    provider = selectors.team_provider(team=team, name=name)
    if provider is None:
        raise not_found(name, f"This team has no OAuth provider called {name!r}.")
    row = (
        OAuthConnection.objects.select_related("provider")
        .filter(provider=provider, user_id=getattr(user, "pk", user))
        .first()
    )
    if row is None or row.status == ConnectionStatus.REVOKED or not row.access_token:
        raise not_found(name, f"You have no active connection to {name!r}; " + _connect_hint(name))
    if row.status == ConnectionStatus.ERROR:
        raise _needs_renewal(name)
    if _fresh(row):
        return _usable(row, name)
    return _refresh(row.pk, name)

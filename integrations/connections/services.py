"""Writes of OAuth providers and connections: register, change and delete a team's providers;
store a user's tokens after the code exchange; revoke a connection.

Who may call these (team admins for providers, the connection's own user for revocation) is
checked by the caller through ``integrations.connections.selectors``. Secrets (the client
secret, the tokens) are encrypted before they reach the database (``providers.crypto``) and
never appear in a return value, an error message or a log line: errors name the field, never
its value. Getting a usable access token for a run is ``integrations.connections.tokens``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import httpx
from asgiref.sync import async_to_sync
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.connections import oauth
from integrations.connections.models import (
    ConnectionStatus,
    OAuthConnection,
    OAuthProvider,
    TokenAuthMethod,
)
from providers import crypto
from runtime_project.exceptions import ApplicationError, Conflict, InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
HOST_RE = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?$")
SCOPE_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,200}$")  # RFC 6749 §3.3 scope-token
SECRET_MAX_BYTES = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
URL_FIELDS = ("authorize_url", "token_url", "userinfo_url", "revoke_url")
REQUIRED_URLS = frozenset({"authorize_url", "token_url"})
EDITABLE = (
    "client_id", "client_secret", *URL_FIELDS, "scopes", "authorize_params", "use_pkce",
    "token_endpoint_auth_method", "api_hosts",
)  # fmt: skip


def _field_error(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, details={"fields": {field: [message]}})


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _field_error(
            "name", "The name must be a slug: 1-64 letters, digits, '-' or '_', starting with a "
            "letter or digit.",
        )  # fmt: skip
    return name


def _check_text(field: str, value: Any, *, max_bytes: int, required: bool) -> str:
    if not isinstance(value, str):
        raise _field_error(field, f"{field} must be a string.")
    value = value.strip()
    if required and not value:
        raise _field_error(field, f"{field} may not be empty.")
    if len(value.encode()) > max_bytes or _CONTROL.search(value):
        raise _field_error(
            field, f"{field} must be at most {max_bytes} bytes, without control characters."
        )
    return value


def _check_url(field: str, value: Any) -> str:
    value = _check_text(field, value, max_bytes=2000, required=field in REQUIRED_URLS)
    if not value:
        return ""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        raise _field_error(field, f"{field} is not a valid URL.") from None
    if url.scheme not in ("http", "https") or not url.host or url.userinfo or url.fragment:
        raise _field_error(
            field, f"{field} must be an http(s) URL with a host, without user:password@ or #."
        )
    return value


def _check_scopes(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 50:
        raise _field_error("scopes", "scopes must be a list of at most 50 strings.")
    for scope in value:
        if not isinstance(scope, str) or not SCOPE_RE.match(scope):
            raise _field_error("scopes", "Each scope is a non-empty string without spaces.")
    return list(dict.fromkeys(value))


def _check_params(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > 20:
        raise _field_error("authorize_params", "authorize_params must be an object (at most 20).")
    out: dict[str, str] = {}
    for key, item in value.items():
        if key in oauth.RESERVED_PARAMS:
            raise _field_error("authorize_params", f"{key!r} is set by the flow itself.")
        if not isinstance(item, str | int | bool) or len(str(key)) > 100 or len(str(item)) > 500:
            raise _field_error("authorize_params", "Each parameter value must be a short string.")
        out[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
    return out


def _check_hosts(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 20:
        raise _field_error("api_hosts", "api_hosts must be a list of at most 20 host names.")
    hosts = []
    for host in value:
        if not isinstance(host, str):
            raise _field_error("api_hosts", "Each entry is a host name, *.domain, or an IP.")
        host = host.strip().lower().removeprefix("[").removesuffix("]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not HOST_RE.match(host):
                raise _field_error(
                    "api_hosts", f"{host!r} is not a host name, *.domain, or an IP."
                ) from None
        hosts.append(host.rstrip("."))
    return list(dict.fromkeys(hosts))


def _check_method(value: Any) -> str:
    if value not in TokenAuthMethod.values:
        raise _field_error(
            "token_endpoint_auth_method", f"Must be one of {', '.join(TokenAuthMethod.values)}."
        )
    return str(value)


def _check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _field_error(field, f"{field} must be true or false.")
    return value


def clean_field(field: str, value: Any) -> Any:
    """The checked value of one editable field (the secret cleaned, not yet encrypted)."""
    if field == "client_id":
        return _check_text(field, value, max_bytes=255, required=True)
    if field == "client_secret":
        return _check_text(field, value, max_bytes=SECRET_MAX_BYTES, required=False)
    if field in URL_FIELDS:
        return _check_url(field, value)
    checks = {
        "scopes": _check_scopes, "authorize_params": _check_params, "api_hosts": _check_hosts,
        "token_endpoint_auth_method": _check_method,
    }  # fmt: skip
    if field in checks:
        return checks[field](value)
    return _check_bool(field, value)


def _apply(provider: OAuthProvider, changes: dict[str, Any]) -> None:
    for field, value in changes.items():
        if field not in EDITABLE:
            raise _field_error(field, f"{field} cannot be set.")
        cleaned = clean_field(field, value)
        if field == "client_secret":
            provider.client_secret = crypto.encrypt(cleaned) if cleaned else ""
        else:
            setattr(provider, field, cleaned)


def provider_create(*, user: Any, team: Any, name: str, **fields: Any) -> OAuthProvider:
    """Register provider ``name`` in ``team`` (the caller checked that ``user`` is an admin
    there). ``fields`` are the editable ones (:data:`EDITABLE`; ``client_id``,
    ``authorize_url`` and ``token_url`` required); ``client_secret`` is encrypted.

    Raises:
        InvalidInput: a bad field (``details.fields``; never its value).
        Conflict: ``oauth_provider_name_taken``: the team has a provider of that name.
    """
    name = _check_name(name)
    for required in ("client_id", "authorize_url", "token_url"):
        fields.setdefault(required, "")
    provider = OAuthProvider(team=team, created_by=user, name=name)
    _apply(provider, fields)
    taken = Conflict(
        f"The team already has an OAuth provider called {name!r}.",
        code="oauth_provider_name_taken",
        details={"name": name},
    )
    if OAuthProvider.objects.filter(team=team, name=name).exists():
        raise taken
    try:
        with transaction.atomic():
            provider.save()
    except IntegrityError:  # a concurrent create of the same name
        raise taken from None
    return provider


@transaction.atomic
def provider_update(*, provider: OAuthProvider, changes: dict[str, Any]) -> OAuthProvider:
    """Change editable fields of ``provider`` (``client_secret: ""`` makes it a public client).
    The stored secret is re-encrypted under the first configured key either way.

    Raises:
        InvalidInput: a bad field. Conflict: ``oauth_provider_unreadable`` (no new secret
            given and the stored one cannot be decrypted with the server's keys).
    """
    provider = OAuthProvider.objects.select_for_update().get(pk=provider.pk)
    _apply(provider, changes)
    if "client_secret" not in changes and provider.client_secret:
        try:
            provider.client_secret = crypto.rotate(provider.client_secret)
        except crypto.InvalidToken:
            raise unreadable("client_secret", provider.name) from None
    provider.save()
    return provider


def provider_delete(*, provider: OAuthProvider) -> None:
    """Delete the provider and, with it, every connection of it (their tokens are deleted
    here, not revoked at the provider)."""
    provider.delete()


def unreadable(what: str, name: str) -> Conflict:
    """The error for a stored secret no configured key decrypts (keys changed or lost)."""
    return Conflict(
        f"The {what} of {name!r} cannot be decrypted with the server's keys "
        "(CREDENTIALS_ENCRYPTION_KEYS or SECRET_KEY changed); store it again.",
        code="oauth_provider_unreadable" if what == "client_secret" else "connection_unreadable",
        details={"name": name},
    )


def client_secret(provider: OAuthProvider) -> str:
    """The provider's decrypted client secret (``""`` for a public client).

    Raises:
        Conflict: ``oauth_provider_unreadable``.
    """
    if not provider.client_secret:
        return ""
    try:
        return crypto.decrypt(provider.client_secret)
    except crypto.InvalidToken:
        raise unreadable("client_secret", provider.name) from None


def connection_store(
    *, provider: OAuthProvider, user: Any, tokens: oauth.TokenSet, account: str = ""
) -> OAuthConnection:
    """Store ``user``'s new tokens at ``provider`` (after a code exchange), encrypted: one
    connection per user and provider, so connecting again replaces the tokens and reactivates
    a revoked or failed connection. Scopes not reported by the provider are the ones asked."""
    values = {
        "access_token": crypto.encrypt(tokens.access_token),
        "refresh_token": crypto.encrypt(tokens.refresh_token) if tokens.refresh_token else "",
        "token_type": tokens.token_type,
        "expires_at": tokens.expires_at,
        "scopes": tokens.scopes if tokens.scopes is not None else list(provider.scopes),
        "account": account,
        "status": ConnectionStatus.ACTIVE,
        "last_error": "",
        "refreshed_at": None,
    }
    with transaction.atomic():
        connection, _ = OAuthConnection.objects.update_or_create(
            provider=provider, user=user, defaults=values
        )
    return connection


def connection_revoke(*, connection: OAuthConnection) -> OAuthConnection:
    """Revoke ``connection``: ask the provider to revoke its grant (RFC 7009, the refresh
    token, else the access token) when it has a revocation URL, then delete both tokens and
    mark it ``revoked``. A failure at the provider is recorded in ``last_error``; the local
    tokens are deleted anyway. Idempotent."""
    error = ""
    provider = connection.provider
    stored, hint = (connection.refresh_token, "refresh_token") if connection.refresh_token else (
        connection.access_token, "access_token")  # fmt: skip
    if provider.revoke_url and stored:
        try:
            token = crypto.decrypt(stored)
            async_to_sync(oauth.revoke)(
                provider, secret=client_secret(provider), token=token, hint=hint
            )
        except crypto.InvalidToken:
            error = "The stored token could not be decrypted; it was not revoked at the provider."
        except ApplicationError as exc:
            error = f"Revocation at the provider failed: {exc.message}"[:500]
    OAuthConnection.objects.filter(pk=connection.pk).update(
        access_token="", refresh_token="", expires_at=None, status=ConnectionStatus.REVOKED,
        last_error=error, updated_at=timezone.now(),
    )  # fmt: skip
    connection.refresh_from_db()
    return connection

"""Bearer credentials: API keys and OAuth2 access tokens, one resolver for REST, SSE and WS.

``Authorization: Bearer <credential>`` (or ``Token <credential>``) carries either an API key
(``<prefix>.<secret>``, :class:`accounts.models.ApiKey`) or an OAuth2 access token issued by
django-oauth-toolkit (authorization code + PKCE, or client credentials). Both resolve to the
acting user with the credential's scopes and team bound to it
(:func:`accounts.access.bind_credential`):

- API key: its user, its scopes, its team;
- OAuth2 token: the user who authorised the app (authorization code), or the application's
  owner (client credentials, where DOT leaves the token's user empty), with the token's scopes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from accounts import access, services


class CredentialError(Exception):
    """A bearer credential was presented but is unusable; ``code`` says why
    (``invalid_credential``, ``api_key_revoked``, ``api_key_expired``, ``token_expired``,
    ``inactive_user``). The message never contains the credential."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Credential:
    """What a bearer credential resolved to."""

    user: Any
    record: Any  # the ApiKey or AccessToken row


def _api_key(raw: str) -> Credential | None:
    row = services.api_key_verify(raw)
    if row is None:
        return None
    if row.revoked_at is not None:
        raise CredentialError("api_key_revoked", "This API key has been revoked.")
    if row.is_expired:
        raise CredentialError("api_key_expired", "This API key has expired.")
    services.api_key_touch(api_key=row)
    user = access.bind_credential(
        row.user,
        scopes=frozenset(row.scopes),
        team_id=row.team_id,
        label=f"api_key:{row.prefix}",
    )
    return Credential(user=user, record=row)


def _oauth2_token(raw: str) -> Credential | None:
    checksum = hashlib.sha256(raw.encode()).hexdigest()
    token = (
        get_access_token_model()
        .objects.select_related("user", "application", "application__user")
        .filter(token_checksum=checksum)
        .first()
    )
    if token is None:
        return None
    if token.expires <= timezone.now():
        raise CredentialError("token_expired", "This access token has expired.")
    user = token.user or (token.application.user if token.application else None)
    if user is None:
        raise CredentialError("invalid_credential", "This access token has no user.")
    app = token.application.client_id if token.application else "?"
    user = access.bind_credential(
        user, scopes=frozenset(token.scope.split()), team_id=None, label=f"oauth2:{app}"
    )
    return Credential(user=user, record=token)


def resolve_bearer(raw: str) -> Credential:
    """The credential ``raw`` stands for.

    Raises:
        CredentialError: unknown, revoked or expired credential, or an inactive user.
    """
    raw = raw.strip()
    credential = (_api_key(raw) if "." in raw[:17] else None) or _oauth2_token(raw)
    if credential is None:
        raise CredentialError("invalid_credential", "Invalid API key or access token.")
    if not credential.user.is_active:
        raise CredentialError("inactive_user", "The credential's user is inactive.")
    return credential

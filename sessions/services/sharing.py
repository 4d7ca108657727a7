"""Share links (issue 7 §4): a secret token giving read-only access to one session's events,
messages, files and HTML export, revocable, optionally expiring.

Only the SHA-256 digest of a token and its first characters (``prefix``, to tell links apart in
a listing) are stored; the token itself is returned once, by :func:`share_link_create`. Tokens
come from :func:`secrets.token_urlsafe` (32 random bytes), so a plain digest lookup is safe: no
salt or slow hash is needed for a value nobody can guess.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from runtime_project import outbound
from runtime_project.exceptions import InvalidInput, NotFound, OutboundFailed
from sessions.export import export_filename, render_session_html
from sessions.models import Session, ShareLink

TOKEN_BYTES = 32
PREFIX_CHARS = 8
MAX_TOKEN_CHARS = 128  # token_urlsafe(32) is 43 characters; anything much longer is not ours


class ShareNotFound(NotFound):
    """Unknown, revoked or expired share token, or its session was deleted (404)."""

    code = "share_not_found"


class ShareProviderNotConfigured(InvalidInput):
    """``SHARE_PROVIDER_URL`` is empty (400)."""

    code = "share_provider_not_configured"


class ShareProviderFailed(OutboundFailed):
    """The provider answered, but not 2xx with ``{"url": "http(s)://…"}`` (502). Details:
    ``{"host", "reason": "status"|"response", "status"}``."""

    code = "share_provider_failed"


def token_digest(token: str) -> str:
    """Hex SHA-256 of ``token`` (what ``ShareLink.token_digest`` stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


def share_link_create(
    *, session: Session, user: Any, expires_at: datetime | None = None
) -> tuple[ShareLink, str]:
    """Create a share link to ``session`` made by ``user``; returns ``(link, token)``.

    The caller has checked that ``user`` may write to the session (member role or above).

    Raises:
        InvalidInput: ``expires_at`` is not in the future (details ``{"fields": {...}}``).
    """
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput(
            "expires_at must be in the future.",
            details={"fields": {"expires_at": ["Must be in the future."]}},
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    link = ShareLink.objects.create(
        session=session,
        token_digest=token_digest(token),
        prefix=token[:PREFIX_CHARS],
        created_by=user if getattr(user, "is_authenticated", False) else None,
        expires_at=expires_at,
    )
    return link, token


def share_link_revoke(*, link: ShareLink) -> ShareLink:
    """Revoke ``link`` (idempotent: a revoked link keeps its first ``revoked_at``). Requests
    made with its token fail from the next one on; an SSE stream already open ends at its next
    re-check (``sessions.apis.shared``)."""
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at", "updated_at"])
    return link


def share_link_resolve(token: str) -> ShareLink:
    """The usable share link of ``token``, with its session (and the session's agent) loaded.

    Raises:
        ShareNotFound: (404 ``share_not_found``) the token is unknown, revoked or expired, or
            its session is deleted. One answer for all, so a probe learns nothing.
    """
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise ShareNotFound("Share link not found.")
    link = (
        ShareLink.objects.select_related("session", "session__agent")
        .filter(token_digest=token_digest(token))
        .first()
    )
    if link is None or not link.is_usable or link.session.deleted_at is not None:
        raise ShareNotFound("Share link not found.")
    return link


def share_link_is_usable(link_id: int) -> bool:
    """Whether the link with pk ``link_id`` still works (for long-lived streams to re-check)."""
    link = ShareLink.objects.select_related("session").filter(pk=link_id).first()
    return link is not None and link.is_usable and link.session.deleted_at is None


PROVIDER_MAX_RESPONSE_BYTES = 64 * 1024


def session_export_upload(*, session: Session) -> str:
    """Upload ``session``'s HTML export to ``SHARE_PROVIDER_URL`` and return the URL the
    provider answers with.

    The request is a raw ``POST`` with ``Content-Type: text/html; charset=utf-8``, a
    ``Content-Disposition: attachment; filename="…"`` naming the file, and
    ``Authorization: Bearer SHARE_PROVIDER_TOKEN`` when that is set; it goes through
    ``runtime_project.outbound.fetch`` (private addresses refused unless allowed by
    ``OUTBOUND_ALLOWED_HOSTS``). The provider must answer 2xx with JSON ``{"url": "…"}``.

    Raises:
        ShareProviderNotConfigured: (400) no provider URL is set.
        OutboundRefused: (400) the provider's address is not allowed.
        OutboundFailed: (502) timeout, connection or TLS failure.
        ShareProviderFailed: (502) a non-2xx answer, or no http(s) ``url`` in its JSON.
    """
    url = settings.SHARE_PROVIDER_URL
    if not url:
        raise ShareProviderNotConfigured(
            "No share provider is configured (SHARE_PROVIDER_URL is empty)."
        )
    body = render_session_html(session=session).encode()
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{export_filename(session)}"',
        "Accept": "application/json",
    }
    if settings.SHARE_PROVIDER_TOKEN:
        headers["Authorization"] = f"Bearer {settings.SHARE_PROVIDER_TOKEN}"
    result = async_to_sync(outbound.fetch)(
        url,
        method="POST",
        headers=headers,
        body=body,
        max_bytes=PROVIDER_MAX_RESPONSE_BYTES,
        timeout_s=settings.SHARE_PROVIDER_TIMEOUT_S,
    )
    host = urlsplit(result.url).hostname or ""
    if not 200 <= result.status < 300:
        raise ShareProviderFailed(
            f"The share provider answered HTTP {result.status}.",
            details={"host": host, "reason": "status", "status": result.status},
        )
    try:
        shared_url = json.loads(result.body).get("url")
    except (ValueError, AttributeError):
        shared_url = None
    if not isinstance(shared_url, str) or not shared_url.startswith(("https://", "http://")):
        raise ShareProviderFailed(
            'The share provider did not answer with JSON {"url": "…"}.',
            details={"host": host, "reason": "response", "status": result.status},
        )
    return shared_url

"""Writes of the webhooks app: endpoints (create, change, delete, rotate the secret, disable),
deliveries (queue one, redeliver, ping).

Who may call these (an admin of the endpoint's team) is checked by the caller
(``integrations.webhooks.selectors``). Secrets: generated here (``signing.secret_generate``),
stored encrypted (``providers.crypto``), returned in plaintext only by :func:`endpoint_create`
and :func:`endpoint_rotate_secret`; nothing here logs one.

Target URLs pass ``runtime_project.outbound.check_url`` when set (a clear 400
``outbound_refused`` for loopback, private, link-local ... addresses) and again at every send,
against the addresses the name resolves to then (``integrations.webhooks.dispatch``), so a name
re-pointed at an internal address after the check (DNS rebinding) is refused too.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.webhooks import signing
from integrations.webhooks.models import (
    EVENT_TYPES,
    PING,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from providers import crypto
from runtime_project.exceptions import Conflict, InvalidInput, OutboundRefused
from runtime_project.outbound import check_url

logger = logging.getLogger(__name__)

URL_MAX_CHARS = 2000
EDITABLE = ("url", "description", "event_types", "agent", "enabled")


def allowed_hosts() -> list[str]:
    """Allow-list entries for webhook targets on top of ``OUTBOUND_ALLOWED_HOSTS``: every
    address with ``WEBHOOK_ALLOW_PRIVATE_TARGETS``, else ``WEBHOOK_ALLOWED_HOSTS``."""
    if settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        return ["0.0.0.0/0", "::/0"]
    return list(settings.WEBHOOK_ALLOWED_HOSTS)


def url_check(url: str) -> str:
    """``url`` if the server may post webhooks to it now.

    Raises:
        InvalidInput: longer than 2000 characters (``details.fields.url``).
        OutboundRefused: not http(s), with credentials, unresolvable, or resolving to a
            non-public address that no allow setting permits (``details.reason``).
    """
    if len(url) > URL_MAX_CHARS:
        raise InvalidInput(
            "The URL is too long.", details={"fields": {"url": [f"max {URL_MAX_CHARS} chars"]}}
        )
    try:
        check_url(url, allow_hosts=allowed_hosts())
    except OutboundRefused as exc:
        details = {**exc.details, "fields": {"url": [exc.message]}}
        raise OutboundRefused(exc.message, details=details) from None
    return url


def event_types_check(event_types: Any) -> list[str]:
    """``event_types`` without duplicates (order kept), each one of ``EVENT_TYPES`` or ``*``.

    Raises:
        InvalidInput: empty, not a list of strings, or an unknown type (``details.fields``).
    """
    if not isinstance(event_types, list) or not event_types:
        problem = 'Give a non-empty list of event types, or ["*"].'
        raise InvalidInput(problem, details={"fields": {"event_types": [problem]}})
    unknown = [t for t in event_types if not isinstance(t, str) or t not in (*EVENT_TYPES, "*")]
    if unknown:
        raise InvalidInput(
            f"Unknown event types: {', '.join(map(str, unknown))}.",
            details={"fields": {"event_types": [f"known: *, {', '.join(EVENT_TYPES)}"]}},
        )
    return list(dict.fromkeys(event_types))


def endpoint_create(
    *,
    team: Any,
    user: Any,
    url: str,
    event_types: list[str],
    description: str = "",
    agent: Any = None,
    enabled: bool = True,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint of ``team`` and its signing secret (``whsec_…``, shown only now).

    Raises:
        InvalidInput, OutboundRefused: see :func:`url_check`, :func:`event_types_check`.
    """
    secret = signing.secret_generate()
    endpoint = WebhookEndpoint.objects.create(
        team=team,
        created_by=user,
        url=url_check(url),
        description=description,
        event_types=event_types_check(event_types),
        agent=agent,
        enabled=enabled,
        secret_encrypted=crypto.encrypt(secret),
    )
    return endpoint, secret


def endpoint_update(*, endpoint: WebhookEndpoint, **changes: Any) -> WebhookEndpoint:
    """Apply ``changes`` (keys of ``EDITABLE``). A new ``url`` is checked again; enabling clears
    ``disabled_reason``, disabling sets it to "disabled by a user".

    Raises:
        InvalidInput, OutboundRefused: as :func:`endpoint_create`; an unknown field.
    """
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise InvalidInput("Unknown fields.", details={"fields": {k: ["unknown"] for k in unknown}})
    if "url" in changes:
        url_check(changes["url"])
    if "event_types" in changes:
        changes["event_types"] = event_types_check(changes["event_types"])
    if "enabled" in changes and changes["enabled"] != endpoint.enabled:
        changes["disabled_reason"] = "" if changes["enabled"] else "disabled by a user"
    for key, value in changes.items():
        setattr(endpoint, key, value)
    endpoint.save(update_fields=[*changes, "updated_at"])
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its deliveries and attempts (nothing more is sent)."""
    endpoint.delete()


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> tuple[WebhookEndpoint, str]:
    """Give the endpoint a new secret; returns it (shown only now). The old one keeps signing
    too (a second ``v1,`` signature) for ``WEBHOOK_SECRET_ROTATION_GRACE_S`` seconds, so a
    receiver can switch without losing deliveries."""
    secret = signing.secret_generate()
    grace = settings.WEBHOOK_SECRET_ROTATION_GRACE_S
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if grace > 0:
            locked.previous_secret_encrypted = locked.secret_encrypted
            locked.previous_secret_expires_at = timezone.now() + timedelta(seconds=grace)
        else:
            locked.previous_secret_encrypted = ""
            locked.previous_secret_expires_at = None
        locked.secret_encrypted = crypto.encrypt(secret)
        locked.save(
            update_fields=[
                "secret_encrypted",
                "previous_secret_encrypted",
                "previous_secret_expires_at",
                "updated_at",
            ]
        )
    for field in ("secret_encrypted", "previous_secret_encrypted", "previous_secret_expires_at"):
        setattr(endpoint, field, getattr(locked, field))
    return endpoint, secret


def endpoint_secrets(endpoint: WebhookEndpoint) -> list[str]:
    """The secrets that sign now: the current one, then the previous one while its grace
    period lasts.

    Raises:
        crypto.InvalidToken: no configured encryption key opens the stored secret.
    """
    active = [crypto.decrypt(endpoint.secret_encrypted)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires and expires > timezone.now():
        active.append(crypto.decrypt(endpoint.previous_secret_encrypted))
    return active


def endpoint_disable(*, endpoint_id: int, reason: str) -> None:
    """Disable an endpoint (no more events are queued for it; queued ones fail unsent)."""
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        enabled=False, disabled_reason=reason[:500], updated_at=timezone.now()
    )
    logger.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)


def envelope(
    *, event_id: str, event_type: str, created_at: Any, data: dict[str, Any]
) -> dict[str, Any]:
    """The JSON body of a webhook: ``{"id", "type", "created_at", "data"}``."""
    return {
        "id": event_id,
        "type": event_type,
        "created_at": created_at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def _wake_after_commit() -> None:
    from integrations.webhooks.dispatch import wake

    transaction.on_commit(wake)


def delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Queue the same message (same ``Webhook-Id`` and payload) again as a new delivery with
    its own attempts, due now.

    Raises:
        Conflict: ``endpoint_disabled``: the endpoint is disabled (enable it first).
    """
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        raise Conflict(
            "The webhook is disabled; enable it before redelivering.",
            code="endpoint_disabled",
            details={"disabled_reason": endpoint.disabled_reason},
        )
    copy = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        payload=delivery.payload,
        max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
        next_attempt_at=timezone.now(),
        redelivery_of=delivery,
    )
    _wake_after_commit()
    return copy


def ping_create(*, endpoint: WebhookEndpoint, due_in_s: float = 0.0) -> WebhookDelivery:
    """A ``ping`` delivery to ``endpoint`` (one attempt, no retries), due in ``due_in_s``
    seconds; sent even while the endpoint is disabled, to check a receiver before enabling it
    again. The "test" API call sends it at once itself and makes it due only later, for the
    dispatchers to pick up should that request die midway."""
    now = timezone.now()
    event_id = str(uuid.uuid4())
    data = {"webhook": {"id": str(endpoint.uuid)}, "message": "Test event from the agent runtime."}
    return WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id=event_id,
        event_type=PING,
        payload=envelope(event_id=event_id, event_type=PING, created_at=now, data=data),
        status=DeliveryStatus.PENDING,
        max_attempts=1,
        next_attempt_at=now + timedelta(seconds=due_in_s),
    )


def matching(
    endpoints: list[WebhookEndpoint], event_type: str, agent_id: int
) -> list[WebhookEndpoint]:
    """The endpoints of ``endpoints`` that want ``event_type`` for sessions on ``agent_id``."""
    return [e for e in endpoints if e.wants(event_type) and e.agent_id in (None, agent_id)]

"""Webhook deliveries and the audit log in the admin: the Redeliver button queues the same
message as a new delivery, which the dispatcher sends to a real receiver as a new attempt;
the audit log records every admin action and can be searched and filtered."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from accounts.models import AuditEntry
from integrations.webhooks.dispatch import dispatch_due
from integrations.webhooks.models import DeliveryAttempt, WebhookDelivery
from integrations.webhooks.services import endpoint_create, ping_create
from tests import factories
from tests.admin.conftest import result_list, selected_rows, signed_in
from tests.integrations.webhooks.conftest import Receiver, verify_signature

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings: Any) -> Any:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    with Receiver() as server:
        yield server


def test_redeliver_button_makes_a_new_delivery_and_a_new_attempt(
    admin_client: Any, root: Any, user: Any, receiver: Receiver
) -> None:
    endpoint, secret = endpoint_create(
        team=factories.team_of(user), user=user, url=receiver.url, event_types=["task.succeeded"]
    )
    first = ping_create(endpoint=endpoint)
    assert dispatch_due() == 1

    page = admin_client.get(
        reverse("admin:webhooks_webhookdelivery_change", args=[first.pk])
    ).content.decode()
    url = reverse("admin:webhooks_webhookdelivery_redeliver", args=[first.pk])
    assert f'action="{url}"' in page and 'id="delivery-redeliver"' in page
    assert admin_client.get(url).status_code == 405

    answer = admin_client.post(url)
    copy = WebhookDelivery.objects.get(redelivery_of=first)
    assert answer.status_code == 302
    assert answer["Location"] == reverse("admin:webhooks_webhookdelivery_change", args=[copy.pk])
    assert (copy.event_id, copy.payload, copy.status) == (first.event_id, first.payload, "pending")
    assert dispatch_due() == 1
    attempt = DeliveryAttempt.objects.get(delivery=copy)
    assert attempt.number == 1 and attempt.status_code == 200
    requests = receiver.wait_for(2)
    assert requests[1].headers["webhook-id"] == first.event_id
    assert verify_signature(secret, requests[1])
    entry = AuditEntry.objects.get(action="admin.webhook_redeliver")
    assert entry.actor == root
    assert entry.details == {"delivery": str(first.uuid), "redelivery": str(copy.uuid)}
    page = admin_client.get(answer["Location"]).content.decode()
    assert f"Queued redelivery {copy.uuid}." in page

    # A disabled endpoint: refused with the reason, nothing queued.
    endpoint.enabled = False
    endpoint.save()
    refused = admin_client.post(url, follow=True).content.decode()
    assert "Not redelivered: The webhook is disabled" in refused
    assert WebhookDelivery.objects.filter(redelivery_of=first).count() == 1

    # Viewing deliveries is not enough to send them again.
    clerk = factories.make_user("clerk", is_staff=True)
    from django.contrib.auth.models import Permission

    clerk.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    assert signed_in(clerk).post(url).status_code == 403


def test_audit_log_search_filters_and_dates(admin_client: Any, user: Any, session: Any) -> None:
    task = factories.make_task(session)
    admin_client.post(reverse("admin:agent_sessions_task_tool", args=[task.pk, "cancel"]))
    from accounts.audit import audit_record

    audit_record(actor=user, action="session.delete", target=session)
    changelist = reverse("admin:accounts_auditentry_changelist")

    page = admin_client.get(changelist).content.decode()
    assert selected_rows(page) == 0  # read-only: no bulk actions, rows are listed as links
    assert "admin.task_cancel" in page and "session.delete" in page
    assert '<nav class="toplinks">' in page  # the date hierarchy

    def rows(**params: str) -> str:
        return result_list(admin_client.get(changelist, params).content.decode())

    origin = rows(origin="admin")
    assert "admin.task_cancel" in origin and "session.delete" not in origin
    api = rows(origin="api")
    assert "session.delete" in api and "admin.task_cancel" not in api
    found = rows(q=str(task.uuid))
    assert "admin.task_cancel" in found and "session.delete" not in found
    by_action = rows(action="session.delete")
    assert "session.delete" in by_action and "admin.task_cancel" not in by_action
    entry = AuditEntry.objects.get(action="admin.task_cancel")
    detail = admin_client.get(reverse("admin:accounts_auditentry_change", args=[entry.pk]))
    assert detail.status_code == 200 and str(task.uuid).encode() in detail.content

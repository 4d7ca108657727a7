"""REST of webhooks (Django test client + a real receiver): create (secret once, private
targets refused), team access (strangers 404, non-admins 403), the test ping, deliveries with
attempts, redelivery through the API and the admin action, and no secret in any listing, read,
log or audit entry."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import AuditEntry
from integrations.webhooks.dispatch import dispatch_due
from integrations.webhooks.models import WebhookDelivery
from tests import factories
from tests.integrations.webhooks.conftest import Receiver, verify_signature

pytestmark = pytest.mark.django_db


def _client(user: Any, scopes: list[str] | None = None) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_token(user, scopes)}")
    return client


def _create(client: APIClient, url: str, **extra: Any) -> Any:
    body = {"url": url, "event_types": ["task.succeeded", "task.failed"], **extra}
    return client.post("/api/v1/webhooks", body, format="json")


def test_private_targets_are_refused_at_create(api_client: APIClient, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    for url in ("http://127.0.0.1:8080/hooks", "http://localhost/x", "http://10.1.2.3/",
                "http://169.254.169.254/latest/meta-data/", "http://[::1]:9000/"):  # fmt: skip
        answer = _create(api_client, url)
        assert answer.status_code == 400, (url, answer.content)
        error = answer.json()["error"]
        assert error["code"] == "outbound_refused"
        assert error["details"]["fields"]["url"], error
    answer = _create(api_client, "ftp://example.com/x")
    assert answer.status_code == 400 and answer.json()["error"]["details"]["reason"] == "scheme"
    assert WebhookDelivery.objects.count() == 0


def test_allow_list_setting_permits_a_private_target(api_client: APIClient, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    assert _create(api_client, "http://127.0.0.1:8080/hooks").status_code == 201
    assert _create(api_client, "http://10.0.0.1/hooks").status_code == 400


def test_create_validates_event_types_and_agent(api_client: APIClient, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    bad = _create(api_client, "http://127.0.0.1:9/", event_types=["task.exploded"])
    assert bad.status_code == 400 and "event_types" in bad.json()["error"]["details"]["fields"]
    empty = _create(api_client, "http://127.0.0.1:9/", event_types=[])
    assert empty.status_code == 400
    unknown_agent = _create(api_client, "http://127.0.0.1:9/", agent="no-such-agent")
    assert unknown_agent.status_code == 404


def test_secret_is_shown_once_and_never_listed_logged_or_audited(
    api_client: APIClient, user: Any, settings: Any, caplog: Any, receiver: Receiver
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    caplog.set_level(logging.DEBUG)
    created = _create(api_client, receiver.url, description="CI hook")
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    webhook_id = created.json()["id"]

    listing = api_client.get("/api/v1/webhooks")
    assert listing.json()["count"] == 1
    assert "secret" not in listing.json()["results"][0]
    detail = api_client.get(f"/api/v1/webhooks/{webhook_id}")
    assert detail.json()["description"] == "CI hook" and "secret" not in detail.json()

    tested = api_client.post(f"/api/v1/webhooks/{webhook_id}/test")
    assert tested.status_code == 200, tested.content
    assert tested.json()["event_type"] == "ping" and tested.json()["status"] == "succeeded"
    assert tested.json()["attempts"][0]["status_code"] == 200
    [ping] = receiver.wait_for(1)
    assert verify_signature(secret, ping)
    assert ping.json["type"] == "ping" and ping.json["id"] == ping.headers["webhook-id"]
    assert ping.headers["content-type"] == "application/json"
    assert ping.headers["user-agent"].startswith("agent-runtime-webhooks")

    rotated = api_client.post(f"/api/v1/webhooks/{webhook_id}/rotate-secret")
    new_secret = rotated.json()["secret"]
    assert rotated.status_code == 200 and new_secret != secret
    deliveries = api_client.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
    for text in (listing.content, detail.content, deliveries.content, caplog.text):
        assert secret.encode() not in (text if isinstance(text, bytes) else text.encode())
        assert new_secret not in str(text)
    audit = list(AuditEntry.objects.filter(action__startswith="webhook.").values("details"))
    assert len(audit) == 3 and secret not in str(audit) and new_secret not in str(audit)


def test_other_teams_webhooks_are_invisible(
    api_client: APIClient, other_client: APIClient, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    webhook_id = _create(api_client, "http://127.0.0.1:9/").json()["id"]
    assert other_client.get("/api/v1/webhooks").json()["count"] == 0
    base = f"/api/v1/webhooks/{webhook_id}"
    assert other_client.get(base).status_code == 404
    assert other_client.patch(base, {"enabled": False}, format="json").status_code == 404
    assert other_client.delete(base).status_code == 404
    assert other_client.post(f"{base}/rotate-secret").status_code == 404
    assert other_client.post(f"{base}/test").status_code == 404
    assert other_client.get(f"{base}/deliveries").status_code == 404
    missing = f"{base}/deliveries/00000000-0000-0000-0000-000000000000/redeliver"
    assert other_client.post(missing).status_code == 404
    assert api_client.post(missing).status_code == 404
    assert api_client.get("/api/v1/webhooks/not-a-uuid").status_code == 404


def test_team_members_below_admin_and_read_scopes_may_not_manage(
    user: Any, api_client: APIClient, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    webhook_id = _create(api_client, "http://127.0.0.1:9/").json()["id"]
    member = factories.make_user("bob")
    factories.add_member(factories.team_of(user), member, role="member")
    as_member = _client(member)
    assert as_member.get(f"/api/v1/webhooks/{webhook_id}").status_code == 403
    assert as_member.get("/api/v1/webhooks").json()["count"] == 0
    reader = _client(user, ["sessions:read"])
    assert reader.get(f"/api/v1/webhooks/{webhook_id}").status_code == 200
    denied = reader.patch(f"/api/v1/webhooks/{webhook_id}", {"enabled": False}, format="json")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "insufficient_scope"


def test_update_and_delete(api_client: APIClient, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    webhook_id = _create(api_client, "http://127.0.0.1:9/").json()["id"]
    url = f"/api/v1/webhooks/{webhook_id}"
    changed = api_client.patch(url, {"event_types": ["*"], "enabled": False}, format="json")
    assert changed.status_code == 200
    assert changed.json()["event_types"] == ["*"]
    assert changed.json()["disabled_reason"] == "disabled by a user"
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    refused = api_client.patch(url, {"url": "http://192.168.1.10/"}, format="json")
    assert refused.status_code == 400
    assert api_client.patch(url, {}, format="json").status_code == 400
    assert api_client.delete(url).status_code == 204
    assert api_client.get(url).status_code == 404


def test_redelivery_through_the_api_and_the_admin_action(
    api_client: APIClient, user: Any, settings: Any, receiver: Receiver
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    created = _create(api_client, receiver.url).json()
    base = f"/api/v1/webhooks/{created['id']}"
    first = api_client.post(f"{base}/test").json()

    again = api_client.post(f"{base}/deliveries/{first['id']}/redeliver")
    assert again.status_code == 202, again.content
    assert again.json()["status"] == "pending" and again.json()["redelivery_of"] == first["id"]
    assert again.json()["event_id"] == first["event_id"]
    assert dispatch_due() == 1

    staff = factories.make_user("operator", is_staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(staff)
    original = WebhookDelivery.objects.get(uuid=first["id"])
    answer = browser.post(
        "/admin/webhooks/webhookdelivery/",
        {"action": "redeliver", "_selected_action": [original.pk]},
    )
    assert answer.status_code == 302
    assert dispatch_due() == 1
    requests = receiver.wait_for(3)
    assert {r.headers["webhook-id"] for r in requests} == {first["event_id"]}
    assert all(verify_signature(created["secret"], r) for r in requests)

    page = api_client.get(f"{base}/deliveries?limit=10").json()
    assert page["count"] == 3
    assert [d["status"] for d in page["results"]] == ["succeeded"] * 3
    assert all(len(d["attempts"]) == 1 for d in page["results"])
    endpoint_page = browser.get(f"/admin/webhooks/webhookendpoint/{original.endpoint_id}/change/")
    assert endpoint_page.status_code == 200 and receiver.url.encode() in endpoint_page.content
    assert created["secret"].encode() not in endpoint_page.content
    assert original.endpoint.secret_encrypted.encode() not in endpoint_page.content
    assert browser.get("/admin/webhooks/webhookendpoint/add/").status_code == 403
    detail = browser.get(f"/admin/webhooks/webhookdelivery/{original.pk}/change/")
    assert detail.status_code == 200
    assert b"Delivery attempts" in detail.content and b"receiver says no" not in detail.content

    api_client.patch(base, {"enabled": False}, format="json")
    refused = api_client.post(f"{base}/deliveries/{first['id']}/redeliver")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "endpoint_disabled"

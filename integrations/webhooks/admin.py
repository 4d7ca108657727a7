"""Django admin for webhooks: endpoints (change and delete; they are created through the API,
which shows the signing secret once), deliveries with their attempts inline and "Redeliver"
as a bulk action and as a button on a delivery's page (``<pk>/redeliver/``, POST), both
through ``delivery_redeliver`` like the API. Attempts and deliveries are records written by
the dispatcher: read-only."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from accounts.audit import AuditedAdmin, ReadOnlyAdminMixin, audit_request
from integrations.webhooks.models import DeliveryAttempt, WebhookDelivery, WebhookEndpoint
from integrations.webhooks.services import delivery_redeliver, event_types_check, url_check
from runtime_project.exceptions import ApplicationError
from sessions.admin import ReadOnlyInline, latest_formset
from sessions.admin.common import action_done

DELIVERIES_INLINED = 20
PREVIEW_CHARS = 200


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


class WebhookEndpointForm(forms.ModelForm):
    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "event_types", "agent", "enabled", "disabled_reason")

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        if "url" in self.changed_data:
            try:
                url_check(url)
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from None
        return str(url)

    def clean_event_types(self) -> list[str]:
        try:
            return event_types_check(self.cleaned_data["event_types"])
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None


class DeliveryInline(ReadOnlyInline):
    model = WebhookDelivery
    fields = ("event_type", "status", "attempts", "last_status_code", "created_at")
    readonly_fields = fields
    formset = latest_formset("created_at", DELIVERIES_INLINED)
    verbose_name_plural = f"Deliveries (latest {DELIVERIES_INLINED})"


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AuditedAdmin):
    form = WebhookEndpointForm
    list_display = ("url", "team", "event_types", "agent", "enabled", "created_at")
    list_filter = ("enabled", ("team", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("team", "agent")
    search_fields = ("uuid", "url", "team__slug")
    raw_id_fields = ("agent",)
    readonly_fields = ("uuid", "team", "created_by", "created_at", "updated_at")
    inlines = (DeliveryInline,)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # POST /api/v1/webhooks: the answer is the only place the secret is shown


class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ("number", "started_at", "duration_ms", "status_code", "error", "response_body")
    readonly_fields = fields
    show_change_link = False


def _redeliver(request: HttpRequest, delivery: WebhookDelivery) -> WebhookDelivery:
    """Queue ``delivery`` again (raises ``ApplicationError``) and audit it."""
    copy = delivery_redeliver(delivery=delivery)
    audit_request(request, "admin.webhook_redeliver", delivery.endpoint,
                  delivery=str(delivery.uuid), redelivery=str(copy.uuid))  # fmt: skip
    return copy


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, AuditedAdmin):
    change_form_template = "admin/webhooks/webhookdelivery/change_form.html"
    list_display = (
        "uuid",
        "endpoint",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event_type", "endpoint")
    list_select_related = ("endpoint",)
    search_fields = ("uuid", "event_id", "endpoint__url", "endpoint__uuid")
    date_hierarchy = "created_at"
    fields = (
        "uuid",
        "endpoint",
        "event_id",
        "event_type",
        "status",
        "attempts",
        "max_attempts",
        "next_attempt_at",
        "last_attempt_at",
        "last_status_code",
        "last_error",
        "redelivery_of",
        "payload_preview",
        "created_at",
    )
    readonly_fields = fields
    inlines = (AttemptInline,)
    actions = ("redeliver",)

    @admin.display(description="payload")
    def payload_preview(self, obj: WebhookDelivery) -> str:
        return _preview(obj.payload)

    @admin.action(description="Redeliver (send the same message again as a new delivery)")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        queued, failed = 0, []
        for delivery in queryset.select_related("endpoint"):
            try:
                _redeliver(request, delivery)
            except ApplicationError as exc:
                failed.append(f"{delivery.uuid}: {exc.message}")
                continue
            queued += 1
        if queued:
            self.message_user(request, f"Queued {queued} redelivery(ies).", messages.SUCCESS)
        for line in failed:
            self.message_user(request, f"Not redelivered {line}", messages.ERROR)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/redeliver/",
                self.admin_site.admin_view(self.redeliver_view),
                name="webhooks_webhookdelivery_redeliver",
            ),
            *super().get_urls(),
        ]

    def redeliver_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST ``<pk>/redeliver/``: queue this delivery's message again as a new delivery and
        open the new one's page. Deliveries are read-only records, so this needs the view
        permission on deliveries and the change permission on webhook endpoints."""
        return require_POST(self._redeliver_one)(request, object_id)

    def _redeliver_one(self, request: HttpRequest, object_id: str) -> HttpResponse:
        delivery = self.get_object(request, object_id)
        if delivery is None:
            raise Http404("No such delivery.")
        if not request.user.has_perm("webhooks.change_webhookendpoint"):
            raise PermissionDenied
        back = reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk])
        try:
            copy = _redeliver(request, delivery)
        except ApplicationError as exc:
            return action_done(
                request, message=f"Not redelivered: {exc.message}", level=messages.ERROR,
                back_to=back,
            )  # fmt: skip
        return action_done(
            request,
            message=f"Queued redelivery {copy.uuid}.",
            level=messages.SUCCESS,
            back_to=back,
            redirect=reverse("admin:webhooks_webhookdelivery_change", args=[copy.pk]),
        )

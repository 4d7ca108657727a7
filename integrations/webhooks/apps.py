from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Outbound webhooks: endpoints, deliveries and attempts (docs/integrations.md)."""

    name = "integrations.webhooks"
    label = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

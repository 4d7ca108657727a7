from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Outbound webhooks: endpoints, deliveries and attempts (docs/integrations/webhooks.md).
    ``ready()`` registers the projector that turns task and session events into deliveries."""

    name = "integrations.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from integrations.webhooks.projection import TYPES, deliveries_project
        from sessions.services.events import event_projector_register

        event_projector_register(types=TYPES, projector=deliveries_project)

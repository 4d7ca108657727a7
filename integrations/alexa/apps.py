from django.apps import AppConfig


class AlexaConfig(AppConfig):
    """The Alexa skill endpoint and its skill bindings (docs/integrations.md)."""

    name = "integrations.alexa"
    label = "alexa"
    default_auto_field = "django.db.models.BigAutoField"

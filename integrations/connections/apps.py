from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    """OAuth2 connections for tools: providers a team registers, users' tokens
    (docs/integrations/connections.md)."""

    name = "integrations.connections"
    label = "connections"
    default_auto_field = "django.db.models.BigAutoField"

from __future__ import annotations

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The web console (docs/console.md): server-rendered pages under ``/console/`` whose small
    ES modules talk to the REST API and the WebSocket with the user's session cookie."""

    name = "console"
    verbose_name = "Web console"

    def ready(self) -> None:
        from django.contrib import admin

        admin.site.site_url = "/console/"  # the admin's "View site" link

"""Django app config of ``schedules`` (cron schedules that queue tasks on agents)."""

from __future__ import annotations

from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    """``schedules``: cron-style schedules that create a task on an agent with a fixed input."""

    name = "schedules"
    label = "schedules"
    verbose_name = "Schedules"
    default_auto_field = "django.db.models.BigAutoField"

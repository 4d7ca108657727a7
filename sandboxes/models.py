"""The sandbox of a session as the database knows it: its idle policy and its start history.

The live state (running or stopped, usage, processes) always comes from the backend
(``sandboxes.selectors.sandbox_state``); this row holds what must survive a server restart.
"""

from __future__ import annotations

from django.db import models

from sessions.models.session import Session


class IdlePolicy(models.TextChoices):
    """What happens to a running sandbox nobody uses (E2B/Daytona auto-stop, made explicit)."""

    STOP = "stop", "Stop after the idle timeout"
    KEEP = "keep", "Keep running until stopped"


class Sandbox(models.Model):
    """One per session, created with its first use.

    ``idle_timeout_s`` (seconds) applies with ``idle_policy = stop``: a sandbox without an exec,
    file operation or attached client for that long stops (its workspace stays; the next use
    starts it again). ``start_count`` and the ``last_*`` times are recorded by the services.
    """

    session = models.OneToOneField(Session, on_delete=models.CASCADE, related_name="sandbox")
    idle_policy = models.CharField(
        max_length=8, choices=IdlePolicy.choices, default=IdlePolicy.STOP
    )
    idle_timeout_s = models.PositiveIntegerField(default=900)
    backend = models.CharField(max_length=32, blank=True, default="")
    tier = models.CharField(max_length=32, blank=True, default="")
    start_count = models.PositiveIntegerField(default=0)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_stopped_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-last_started_at",)

    def __str__(self) -> str:
        return f"sandbox of {self.session}"

    @property
    def sandbox_id(self) -> str:
        """The backend's id for it: the session's public id."""
        return str(self.session.uuid)

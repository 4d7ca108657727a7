from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models

from sessions.choices import SessionStatus
from sessions.models.agent import Agent
from sessions.models.base import TimeStampedModel


class Session(TimeStampedModel):
    """A thread of work on one agent, with its own workspace directory and event log.

    ``last_seq`` is the seq of the newest event; it only moves under the row lock taken by
    ``event_append`` so event seqs stay gapless. Deleting is soft (``deleted_at``) and can be
    undone with restore.
    """

    name = models.CharField(max_length=200, blank=True, default="")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="sessions")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="agent_sessions",
        help_text="The user who created the session (it belongs to its team).",
    )
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.CASCADE, related_name="agent_sessions"
    )
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=SessionStatus.choices, default=SessionStatus.IDLE
    )
    last_seq = models.BigIntegerField(default=0)
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.name or str(self.uuid)

    @property
    def workspace_path(self) -> Path:
        """Host directory of the workspace (``WORKSPACE_ROOT/<uuid>``), mounted at /workspace."""
        return Path(settings.WORKSPACE_ROOT) / str(self.uuid)

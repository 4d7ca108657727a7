from __future__ import annotations

from typing import Any

from django.db import models

from sessions.models.session import Session


class Event(models.Model):
    """One entry of a session's append-only event log (DESIGN §3).

    ``seq`` is gapless per session (``UniqueConstraint(session, seq)``). The envelope sent to
    clients is :meth:`envelope`.
    """

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="events")
    task = models.ForeignKey(
        "agent_sessions.Task",
        on_delete=models.CASCADE,
        related_name="events",
        null=True,
        blank=True,
    )
    seq = models.BigIntegerField()
    type = models.CharField(max_length=64)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ("session", "seq")
        constraints = [models.UniqueConstraint(fields=("session", "seq"), name="event_seq_unique")]
        indexes = [models.Index(fields=("task", "seq"), name="event_task_seq")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.type}"

    def envelope(
        self, *, session_uuid: str | None = None, task_uuid: str | None = None
    ) -> dict[str, Any]:
        """``{"seq", "session_id", "task_id", "type", "ts", "data"}``; pass the uuids when the
        caller already has them to avoid loading the related rows."""
        if session_uuid is None:
            session_uuid = str(self.session.uuid)
        if task_uuid is None and self.task_id is not None:
            task_uuid = str(self.task.uuid)  # type: ignore[union-attr]
        return {
            "seq": self.seq,
            "session_id": session_uuid,
            "task_id": task_uuid,
            "type": self.type,
            "ts": self.created_at.isoformat().replace("+00:00", "Z"),
            "data": self.data,
        }

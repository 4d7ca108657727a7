from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from runtime_project.exceptions import Conflict
from sessions.choices import (
    TASK_TRANSITIONS,
    TERMINAL_STATUSES,
    MultitaskStrategy,
    OnDisconnect,
    TaskStatus,
    TaskType,
)
from sessions.models.agent import Agent
from sessions.models.base import TimeStampedModel
from sessions.models.session import Session


class IllegalTransition(Conflict):
    """A task status change the status machine does not allow (HTTP 409)."""

    code = "illegal_transition"


class Task(TimeStampedModel):
    """One unit of work on a session (DESIGN §2).

    The status machine lives here: :meth:`transition` refuses moves not listed in
    ``TASK_TRANSITIONS``. Callers persist with ``save(update_fields=...)`` inside their own
    transaction; the claim by a worker is a conditional UPDATE (see ``task_claim``).
    """

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="tasks")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="tasks")
    agent_version = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    task_type = models.CharField(max_length=16, choices=TaskType.choices, default=TaskType.RUN)
    input = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=TaskStatus.choices, default=TaskStatus.QUEUED, db_index=True
    )
    current_phase = models.CharField(max_length=64, blank=True, default="queued")
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    multitask_strategy = models.CharField(
        max_length=16, choices=MultitaskStrategy.choices, default=MultitaskStrategy.ENQUEUE
    )
    on_disconnect = models.CharField(
        max_length=16, choices=OnDisconnect.choices, default=OnDisconnect.CONTINUE
    )
    # NULL (not "") means "no key", so the partial unique constraint ignores those rows.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    timeout_s = models.FloatField(default=3600.0)
    attempt = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=200, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A task another task started (an llm agent's call_agent tool); runs inside its parent.
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    # While ``waiting``: what the task waits for (``{"kind": "ask_user"|"approval", "call_id",
    # "name", "arguments", "question"?}``); the client's answer is kept in ``resume`` until the
    # runner has consumed it.
    pending_action = models.JSONField(null=True, blank=True)
    resume = models.JSONField(null=True, blank=True)
    # Time travel (debugger.replay): the task this one re-runs (a fork) or was copied from (a
    # session copy), and the step id the fork started from ("" = from the start).
    forked_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="forks"
    )
    forked_from_step = models.CharField(max_length=255, blank=True, default="")
    # Not a field: the envelope of the ``task.status`` queued event ``task_create`` appended, on
    # the instance it returns (a streaming create sends it without reading the log back).
    created_envelope: dict[str, Any] | None = None

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("created_by", "idempotency_key"),
                condition=models.Q(idempotency_key__isnull=False),
                name="task_idempotency_key_unique",
            )
        ]
        indexes = [models.Index(fields=("session", "status"), name="task_session_status")]

    def __str__(self) -> str:
        return f"{self.uuid} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration_ms(self) -> int | None:
        """Run time in milliseconds (``None`` until the task has started)."""
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return int((end - self.started_at).total_seconds() * 1000)

    def transition(self, new_status: str, *, phase: str | None = None) -> list[str]:
        """Move to ``new_status`` in memory and return the fields to save.

        Raises:
            IllegalTransition: the move is not allowed from the current status.
        """
        allowed = TASK_TRANSITIONS.get(self.status, frozenset())
        if new_status not in allowed:
            raise IllegalTransition(
                f"A {self.status} task cannot become {new_status}.",
                details={"status": self.status, "requested": new_status},
            )
        self.status = new_status
        self.current_phase = phase or new_status
        fields = ["status", "current_phase", "updated_at"]
        now = timezone.now()
        if new_status == TaskStatus.RUNNING and self.started_at is None:
            self.started_at = now
            fields.append("started_at")
        if new_status in TERMINAL_STATUSES:
            self.finished_at = now
            self.lease_expires_at = None
            fields += ["finished_at", "lease_expires_at"]
        return fields

    def mark_running(self, *, worker: str, lease_s: float) -> list[str]:
        """``queued → running`` (or ``waiting → running``) with a fresh lease."""
        fields = self.transition(TaskStatus.RUNNING, phase="starting")
        self.worker = worker
        self.lease_expires_at = timezone.now() + timedelta(seconds=lease_s)
        self.attempt += 1
        return [*fields, "worker", "lease_expires_at", "attempt"]

    def finish(
        self,
        status: str,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> list[str]:
        """Move to a terminal status, recording result/error/usage.

        Raises:
            IllegalTransition: ``status`` is not terminal or the task already finished.
        """
        if status not in TERMINAL_STATUSES:
            raise IllegalTransition(f"{status} is not a terminal status.")
        fields = self.transition(status)
        if result is not None:
            self.result = result
            fields.append("result")
        if error is not None:
            self.error = error
            fields.append("error")
        if usage:
            self.usage = {**self.usage, **usage}
            fields.append("usage")
        return fields

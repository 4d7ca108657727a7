"""The trace of a run: a tree of :class:`Step` rows per task (issue 10, item 1).

Steps are a projection of the event log (``debugger.services.steps_project``), written in the
same transaction as the events they come from, so the trace never disagrees with the log.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from sessions.models.base import TimeStampedModel


class StepKind(models.TextChoices):
    AGENT = "agent", "Agent (the task's root step)"
    LLM = "llm", "Model call"
    TOOL = "tool", "Tool call"
    COMPONENT = "component", "Workflow component"
    CELL = "cell", "Notebook cell"
    COMMAND = "command", "Command (process)"


class StepStatus(models.TextChoices):
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"
    SKIPPED = "skipped", "Skipped"


OPEN_STEP_STATUSES = frozenset({StepStatus.RUNNING, StepStatus.WAITING})


class Step(TimeStampedModel):
    """One traced step of a task.

    ``step_id`` is the runner's id (unique per task): ``agent`` for the root, the workflow's
    step id for components (``each[1].sq``), ``cell-<i>``, ``process-<id>``, ``tool-<call id>``,
    ``llm-<n>``. ``input``/``output``/``error`` are JSON; a value over
    ``STEP_INLINE_MAX_BYTES`` is ``{"artifact": {"id", "size", "content_type", …}}``.
    ``duration_ms`` is milliseconds; ``cost_usd`` US dollars; token counts are null when the
    runner did not report them. ``seq_started``/``seq_finished`` are the ``seq`` of the events
    that opened and closed the step.
    """

    task = models.ForeignKey("agent_sessions.Task", on_delete=models.CASCADE, related_name="steps")
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, related_name="children", null=True, blank=True
    )
    step_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=StepKind.choices)
    name = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.RUNNING)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.BigIntegerField(null=True, blank=True)
    prompt_tokens = models.IntegerField(null=True, blank=True)
    completion_tokens = models.IntegerField(null=True, blank=True)
    cost_usd = models.FloatField(null=True, blank=True)
    seq_started = models.BigIntegerField(null=True, blank=True)
    seq_finished = models.BigIntegerField(null=True, blank=True)
    # Kind-specific facts: a component's type and loop iteration, a cell's language and
    # execution count, a tool call's approval flag, a skipped component's reason.
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("task", "seq_started", "id")
        constraints = [
            models.UniqueConstraint(fields=("task", "step_id"), name="step_task_step_id_unique")
        ]
        indexes = [models.Index(fields=("task", "status"), name="step_task_status")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name or self.step_id}"


class Breakpoint(TimeStampedModel):
    """Where a debug run pauses: before a step of ``step_kind`` (blank: any kind) named ``name``
    (blank: any name). Both blank is "before every step".

    Exactly one of ``agent`` (every debug run of that agent) and ``task`` (that task only) is
    set. ``name`` matches a workflow component id, a tool name, a cell index (``"2"``), a
    model name, or the step id itself (``llm-3``, ``each[1].sq``). Breakpoints are honoured
    only by debug runs (``config.debug`` or ``X-DEBUG-RUN``); ``hit_count`` counts pauses.
    """

    agent = models.ForeignKey(
        "agent_sessions.Agent", on_delete=models.CASCADE, related_name="breakpoints",
        null=True, blank=True,
    )  # fmt: skip
    task = models.ForeignKey(
        "agent_sessions.Task", on_delete=models.CASCADE, related_name="breakpoints",
        null=True, blank=True,
    )  # fmt: skip
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    step_kind = models.CharField(max_length=16, blank=True, default="")
    name = models.CharField(max_length=255, blank=True, default="")
    enabled = models.BooleanField(default=True)
    hit_count = models.IntegerField(default=0)

    class Meta:
        ordering = ("created_at", "id")
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(agent__isnull=False, task__isnull=True)
                    | models.Q(agent__isnull=True, task__isnull=False)
                ),
                name="breakpoint_agent_xor_task",
            )
        ]

    def __str__(self) -> str:
        return f"break before {self.step_kind or 'any'} {self.name or '*'}"


class DebugAction(models.TextChoices):
    CONTINUE = "continue", "Continue"
    STEP = "step", "Step (run one step, then pause)"
    ABORT = "abort", "Abort"
    PAUSE = "pause", "Pause (after the current step)"


class DebugCommand(TimeStampedModel):
    """A debugger command sent to a task: the worker running it picks it up (a channel-layer
    doorbell, and a database poll while paused, so a lost message only delays it).
    ``input`` is the edited input of the pending step (edit-and-continue), or null.
    ``consumed_at`` is when the run applied it. Kept as the audit trail of a debug session."""

    task = models.ForeignKey(
        "agent_sessions.Task", on_delete=models.CASCADE, related_name="debug_commands"
    )
    action = models.CharField(max_length=16, choices=DebugAction.choices)
    input = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at", "id")
        indexes = [models.Index(fields=("task", "consumed_at"), name="debugcmd_task_pending")]

    def __str__(self) -> str:
        return f"{self.action} {self.task_id}"


class Monitor(TimeStampedModel):
    """A named mirror: runs started with ``X-MONITOR-ID: <uuid>`` stream their events to
    ``/ws/monitor/<uuid>/``, which only ``owner`` may open. ``team`` is the team whose members
    may attach their runs to it."""

    name = models.CharField(max_length=200, blank=True, default="")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="monitors"
    )
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.CASCADE, related_name="monitors", null=True, blank=True
    )

    class Meta:
        ordering = ("-created_at", "id")

    def __str__(self) -> str:
        return self.name or str(self.uuid)

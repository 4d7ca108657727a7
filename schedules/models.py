"""Cron schedules that queue a task on an agent, and the record of every run.

A :class:`Schedule` belongs to a team (``team``; ``owner`` is the member who created it, and
its tasks run as that user) and names an agent of the team or a public one. At each tick of
its ``cron`` expression (read in its ``timezone``) a scheduler queues a ``run`` task with the
schedule's ``input`` and ``config``, in a new session of the team per run or in one session
kept on the schedule (``session_mode``). Each firing is a :class:`ScheduleRun` row; the unique
``(schedule, tick)`` constraint is what lets several schedulers run at once while each tick
fires at most once (``schedules.services``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from sessions.models.base import TimeStampedModel


class SessionMode(models.TextChoices):
    NEW = "new", "A new session per run"
    REUSE = "reuse", "One session kept on the schedule"


class RunTrigger(models.TextChoices):
    CRON = "cron", "Cron tick"
    MANUAL = "manual", "Run now"


class Schedule(TimeStampedModel):
    """A cron schedule. ``next_run_at`` (UTC) is the tick the schedulers fire next; it is
    ``None`` while the schedule is disabled. Change it only through ``schedules.services``."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="schedules"
    )
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="schedules")
    agent = models.ForeignKey(
        "agent_sessions.Agent", on_delete=models.CASCADE, related_name="schedules"
    )
    name = models.CharField(max_length=200)
    cron = models.CharField(
        max_length=200, help_text="Five-field cron expression (croniter syntax) or @daily etc."
    )
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="IANA time zone the cron expression is read in."
    )
    input = models.JSONField(default=dict, blank=True, help_text="The input of every task.")
    config = models.JSONField(default=dict, blank=True, help_text="The config of every task.")
    session_mode = models.CharField(
        max_length=8, choices=SessionMode.choices, default=SessionMode.NEW
    )
    # session_mode "reuse": the session every run goes to (created on the first run, and again
    # if it was deleted).
    session = models.ForeignKey(
        "agent_sessions.Session",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_task = models.ForeignKey(
        "agent_sessions.Task",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ("name", "created_at")
        indexes = [models.Index(fields=("enabled", "next_run_at"), name="schedule_due_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron} {self.timezone})"


class ScheduleRun(models.Model):
    """One firing of a schedule: for a cron ``tick``, or a manual "run now" (``tick`` = the
    moment it was asked). ``task`` is the task it queued; ``error`` (``{"code", "message",
    "details"}``) says why none was queued."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="runs")
    tick = models.DateTimeField(help_text="The cron tick this run fires for (UTC).")
    trigger = models.CharField(max_length=8, choices=RunTrigger.choices, default=RunTrigger.CRON)
    task = models.ForeignKey(
        "agent_sessions.Task",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="schedule_runs",
    )
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            # At most one run per tick, whatever the number of schedulers (see services).
            models.UniqueConstraint(fields=("schedule", "tick"), name="schedule_run_once_per_tick")
        ]

    def __str__(self) -> str:
        return f"{self.schedule_id}@{self.tick.isoformat()}"

"""Django admin for schedules: the list with team, agent, cron, time zone and next/last run, a
"run now" action (through the services, like the API), and each schedule's latest runs inline.
The add/change form checks cron, time zone, input and config like the API does, that the agent
is one of the schedule's team or a public one, and that the owner is a member of the team."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone as django_tz

from accounts.models import ROLE_RANK, Membership
from runtime_project.exceptions import ApplicationError, InvalidInput, NotFound
from schedules.cron import next_tick
from schedules.models import Schedule, ScheduleRun, SessionMode
from schedules.selectors import WRITE_ROLE, schedule_agent_get
from schedules.services import schedule_fire, schedule_validate
from sessions.admin import ReadOnlyInline, latest_formset

RUNS_INLINED = 50
ERROR_PREVIEW_CHARS = 200
_CHECKED = ("name", "cron", "timezone", "input", "config", "session_mode", "enabled")


def _messages(value: Any) -> list[str]:
    """Field errors of the services (strings, or ``{"path", "message"}`` for input/config) as
    form error strings."""
    out = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            path = item.get("path")
            out.append(f"{path}: {item.get('message')}" if path else str(item.get("message")))
        else:
            out.append(str(item))
    return out


class ScheduleAdminForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = ("owner", "team", "agent", "name", *_CHECKED)

    def clean(self) -> dict[str, Any]:
        """The services' checks, plus: the agent is one the team may run, and a new owner or
        team needs the owner to be a member (not a viewer) of the team."""
        cleaned = super().clean() or {}
        owner, team, agent = cleaned.get("owner"), cleaned.get("team"), cleaned.get("agent")
        if owner is not None and team is not None and {"owner", "team"} & set(self.changed_data):
            role = (
                Membership.objects.filter(team=team, user=owner)
                .values_list("role", flat=True)
                .first()
            )
            if role is None or ROLE_RANK[role] < ROLE_RANK[WRITE_ROLE]:
                self.add_error("owner", "The owner must be a member (not a viewer) of the team.")
        if team is None or agent is None:
            return cleaned
        try:
            schedule_agent_get(team=team, agent_id=agent.uuid)
        except NotFound:
            self.add_error(
                "agent", "The team may not use this agent (deleted, or private to another team)."
            )
            return cleaned
        try:
            values = {key: cleaned[key] for key in _CHECKED if key in cleaned}
            cleaned.update(schedule_validate(agent=agent, values=values))
        except InvalidInput as exc:
            for field, value in exc.details.get("fields", {}).items():
                name = field.split(".", 1)[0]  # "config.timeout_s" → the config field
                self.add_error(name if name in self.fields else None, _messages(value))
        return cleaned


class ScheduleRunInline(ReadOnlyInline):
    model = ScheduleRun
    fields = ("tick", "trigger", "task", "error_preview", "created_at")
    readonly_fields = fields
    formset = latest_formset("created_at", RUNS_INLINED)
    show_change_link = False
    verbose_name_plural = f"Runs (latest {RUNS_INLINED})"

    @admin.display(description="error")
    def error_preview(self, obj: ScheduleRun) -> str:
        if not obj.error:
            return ""
        text = json.dumps(obj.error, default=str, ensure_ascii=False)
        return text if len(text) <= ERROR_PREVIEW_CHARS else text[: ERROR_PREVIEW_CHARS - 1] + "…"


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleAdminForm
    list_display = (
        "name",
        "team",
        "agent",
        "owner",
        "cron",
        "timezone",
        "enabled",
        "next_run_at",
        "last_run_at",
    )
    list_filter = ("enabled", "session_mode")
    list_select_related = ("team", "agent", "owner")
    search_fields = ("name", "uuid", "team__slug", "owner__username", "agent__slug")
    raw_id_fields = ("team", "owner", "agent")
    readonly_fields = (
        "uuid",
        "session",
        "next_run_at",
        "last_run_at",
        "last_task",
        "created_at",
        "updated_at",
    )
    actions = ("run_now",)
    inlines = (ScheduleRunInline,)

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        """What ``schedule_update`` does on a change: a new ``next_run_at`` when the timing
        changed, no kept session when the agent changed or runs get new sessions."""
        changed = set(form.changed_data)
        if (
            change
            and obj.session_id
            and ("agent" in changed or obj.session_mode == SessionMode.NEW)
        ):
            obj.session = None
        if not change or changed & {"cron", "timezone", "enabled"}:
            now = django_tz.now()
            obj.next_run_at = next_tick(obj.cron, obj.timezone, after=now) if obj.enabled else None
        super().save_model(request, obj, form, change)

    @admin.action(description="Run now (queue each one's task outside the cron)")
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        queued, failed = 0, []
        for schedule in queryset:
            try:
                run = schedule_fire(schedule=schedule)
            except ApplicationError as exc:
                failed.append(f"{schedule.name}: {exc.message}")
                continue
            if run.task_id is not None:
                queued += 1
            else:
                failed.append(f"{schedule.name}: {(run.error or {}).get('message', 'failed')}")
        if queued:
            self.message_user(request, f"Queued {queued} task(s).", messages.SUCCESS)
        for line in failed:
            self.message_user(request, f"No task queued for {line}", messages.ERROR)

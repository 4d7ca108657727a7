"""Django admin for Alexa skill bindings: the list with team, agent, owner and state, an
"enable"/"disable" pair of actions, and an add/change form that checks what the API checks
(the application id, texts and slot mapping through the services; the owner a member, not a
viewer, of the team; the agent one the owner sees, of the team or public)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import access
from integrations.alexa.models import AlexaSkill
from integrations.alexa.selectors import WRITE_ROLE, alexa_skill_agent_get
from integrations.alexa.services import SPEECH_FIELDS, alexa_skill_validate
from runtime_project.exceptions import ApplicationError, InvalidInput

_CHECKED = ("name", "application_id", "slot_mapping", *SPEECH_FIELDS, "enabled")


def _messages(value: Any) -> list[str]:
    """Field errors of the services (strings, or ``{"path", "message"}`` for the slot
    mapping) as form error strings."""
    out = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            path = item.get("path")
            out.append(f"{path}: {item.get('message')}" if path else str(item.get("message")))
        else:
            out.append(str(item))
    return out


class AlexaSkillAdminForm(forms.ModelForm):
    class Meta:
        model = AlexaSkill
        fields = (
            "name",
            "application_id",
            "owner",
            "team",
            "agent",
            "slot_mapping",
            *SPEECH_FIELDS,
            "end_session_after_answer",
            "enabled",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        owner, team, agent = cleaned.get("owner"), cleaned.get("team"), cleaned.get("agent")
        if owner is not None and team is not None:
            try:
                access.require_role(owner, team.pk, WRITE_ROLE, what="Team")
            except ApplicationError:
                self.add_error("owner", "The owner must be a member (not a viewer) of the team.")
            else:
                if agent is not None:
                    try:
                        alexa_skill_agent_get(user=owner, team=team, agent_id=agent.uuid)
                    except ApplicationError:
                        self.add_error(
                            "agent",
                            "The owner cannot use this agent in this team (not visible to "
                            "them, deleted, or private to another team).",
                        )
        try:
            values = {key: cleaned[key] for key in _CHECKED if key in cleaned}
            cleaned.update(alexa_skill_validate(values=values))
        except InvalidInput as exc:
            for field, errors in exc.details.get("fields", {}).items():
                name = field if field in self.fields else None
                self.add_error(name, _messages(errors))
        return cleaned


@admin.register(AlexaSkill)
class AlexaSkillAdmin(admin.ModelAdmin):
    form = AlexaSkillAdminForm
    list_display = ("name", "application_id", "team", "agent", "owner", "enabled", "updated_at")
    list_filter = ("enabled",)
    list_select_related = ("team", "agent", "owner")
    search_fields = (
        "name",
        "uuid",
        "application_id",
        "team__slug",
        "owner__username",
        "agent__slug",
    )
    raw_id_fields = ("team", "owner", "agent")
    readonly_fields = ("uuid", "created_at", "updated_at")
    actions = ("enable", "disable")

    @admin.action(description="Enable the selected skills")
    def enable(self, request: HttpRequest, queryset: QuerySet[AlexaSkill]) -> None:
        count = queryset.update(enabled=True)
        self.message_user(request, f"Enabled {count} skill(s).", messages.SUCCESS)

    @admin.action(description="Disable the selected skills (Alexa requests are refused)")
    def disable(self, request: HttpRequest, queryset: QuerySet[AlexaSkill]) -> None:
        count = queryset.update(enabled=False)
        self.message_user(request, f"Disabled {count} skill(s).", messages.SUCCESS)

"""Alexa skills bound to agents.

An :class:`AlexaSkill` says: requests of the Alexa skill ``application_id``
(``amzn1.ask.skill.…``) sent to ``POST /alexa/{agent}`` run ``agent`` as ``owner`` (the member
who registered the binding), in sessions of ``team``. The owner's access is checked again at
every request (``sessions.selectors.agent_get``), so a binding stops working when its owner
loses the agent or the team. ``slot_mapping`` turns an intent's slots into the task input
(``integrations.alexa.mapping``); the texts are what the skill says for the built-in requests.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from sessions.models.base import TimeStampedModel

DEFAULT_LAUNCH_SPEECH = "Hi! What would you like me to do?"
DEFAULT_HELP_SPEECH = "Tell me what you need, and I will ask the agent for you."
DEFAULT_STOP_SPEECH = "Goodbye."
DEFAULT_FALLBACK_SPEECH = "Sorry, I did not get that. What would you like me to do?"


class AlexaSkill(TimeStampedModel):
    """One Alexa skill bound to one agent (``UniqueConstraint(application_id, agent)``)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="alexa_skills",
        help_text="Who registered it; the skill's tasks run as this user, with their access.",
    )
    team = models.ForeignKey(
        "accounts.Team",
        on_delete=models.CASCADE,
        related_name="alexa_skills",
        help_text="The team the binding and the sessions of its conversations belong to.",
    )
    agent = models.ForeignKey(
        "agent_sessions.Agent", on_delete=models.CASCADE, related_name="alexa_skills"
    )
    application_id = models.CharField(
        max_length=200,
        help_text="The skill's id in the Alexa developer console (amzn1.ask.skill.…).",
    )
    name = models.CharField(max_length=200, help_text="Title of the cards shown in the app.")
    slot_mapping = models.JSONField(
        default=dict,
        blank=True,
        help_text='How intent slots become the task input: {"intents": {"<Intent>": '
        '{"slots": {"<slot>": "<input key>"}, "input": {…template…}}}, "input": {…}}. '
        "Default: each slot becomes the input key of the same name.",
    )
    launch_speech = models.TextField(default=DEFAULT_LAUNCH_SPEECH)
    help_speech = models.TextField(default=DEFAULT_HELP_SPEECH)
    stop_speech = models.TextField(default=DEFAULT_STOP_SPEECH)
    fallback_speech = models.TextField(default=DEFAULT_FALLBACK_SPEECH)
    end_session_after_answer = models.BooleanField(
        default=False,
        help_text="End the Alexa session after each answer (otherwise it stays open for a "
        "follow-up in the same agent session).",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ("name", "created_at")
        constraints = [
            models.UniqueConstraint(
                fields=("application_id", "agent"), name="alexa_skill_unique_per_agent"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.application_id})"

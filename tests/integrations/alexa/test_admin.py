"""The admin of Alexa skills: list and change pages render; the form checks what the API
checks; the disable action turns skills off."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from integrations.alexa.models import AlexaSkill
from tests import factories


@pytest.fixture
def admin_client(db: Any) -> Client:
    client = Client()
    client.force_login(factories.make_user("root", is_staff=True, is_superuser=True))
    return client


def test_pages_render(admin_client: Client, skill: AlexaSkill) -> None:
    listing = admin_client.get(reverse("admin:alexa_alexaskill_changelist"))
    assert listing.status_code == 200 and skill.application_id in listing.content.decode()
    change = admin_client.get(reverse("admin:alexa_alexaskill_change", args=[skill.pk]))
    assert change.status_code == 200
    assert admin_client.get(reverse("admin:alexa_alexaskill_add")).status_code == 200


def test_the_form_refuses_an_owner_outside_the_team_and_a_bad_id(
    admin_client: Client, skill: AlexaSkill
) -> None:
    stranger = factories.make_user("stranger")
    response = admin_client.post(
        reverse("admin:alexa_alexaskill_add"),
        {
            "name": "Other",
            "application_id": "nope",
            "owner": stranger.pk,
            "team": skill.team.pk,
            "agent": skill.agent.pk,
            "slot_mapping": "{}",
            "launch_speech": "Hi",
            "help_speech": "Help",
            "stop_speech": "Bye",
            "fallback_speech": "What?",
            "enabled": "on",
        },
    )
    assert response.status_code == 200  # the form again, with errors
    errors = response.context["adminform"].form.errors
    assert "owner" in errors and "application_id" in errors
    assert AlexaSkill.objects.count() == 1


def test_the_disable_action(admin_client: Client, skill: AlexaSkill) -> None:
    response = admin_client.post(
        reverse("admin:alexa_alexaskill_changelist"),
        {"action": "disable", "_selected_action": [skill.pk]},
    )
    assert response.status_code == 302
    skill.refresh_from_db()
    assert skill.enabled is False

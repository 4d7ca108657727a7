"""Agents in the admin: the version history links each version to its diff, the diff page
shows the changed keys, and a spec edited in the admin is validated and versioned like an
API change."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import pytest
from django.urls import reverse

from sessions.models import Agent, AgentVersion
from sessions.services.agents import agent_update
from tests import factories
from tests.admin.conftest import signed_in

pytestmark = pytest.mark.django_db


def _diff(agent: Agent, **params: Any) -> str:
    return reverse("admin:agent_sessions_agent_diff", args=[agent.pk])


def test_diff_between_versions_shows_the_changed_key(admin_client: Any, user: Any) -> None:
    agent = factories.make_agent(user, slug="builder", spec={"allow_input_command": True})
    agent_update(agent=agent, user=user, spec={"allow_input_command": True, "env": {"A": "1"}})
    agent_update(agent=agent, user=user, input_schema={"type": "object"})

    change = admin_client.get(
        reverse("admin:agent_sessions_agent_change", args=[agent.pk])
    ).content.decode()
    url = _diff(agent)
    assert f'href="{url}" id="agent-diff-link"' in change
    assert f'href="{url}?a=1&amp;b=2"' in change and f'href="{url}?a=2&amp;b=3"' in change

    page = admin_client.get(url, {"a": 1, "b": 2})
    assert page.status_code == 200
    text = unescape(page.content.decode())
    added = re.findall(r'<span class="diff-add">(.*?)</span>', text)
    removed = re.findall(r'<span class="diff-remove">(.*?)</span>', text)
    # Sorted JSON: "env" comes after "allow_input_command", which gains a comma.
    assert added == [
        '+    "allow_input_command": true,',
        '+    "env": {',
        '+      "A": "1"',
        "+    }",
    ]
    assert removed == ['-    "allow_input_command": true']
    assert "--- version 1" in text and "+++ version 2" in text

    # Default: the newest version against the one before it (the input schema changed).
    text = unescape(admin_client.get(url).content.decode())
    assert "+++ version 3" in text
    assert '<span class="diff-add">+    "type": "object"</span>' in text
    assert '<span class="diff-remove">-  "input_schema": {},</span>' in text

    same = admin_client.get(url, {"a": 2, "b": 2}).content.decode()
    assert "Versions 2 and 2 have the same kind, description, spec and input schema." in same
    missing = admin_client.get(url, {"a": 1, "b": 9})
    assert missing.status_code == 400 and b"This agent has no version 9." in missing.content
    assert admin_client.get(url, {"a": "x"}).status_code == 400


def test_diff_needs_view_permission(user: Any) -> None:
    agent = factories.make_agent(user)
    url = _diff(agent)
    assert signed_in(user).get(url).status_code == 302  # not staff: to the admin login
    assert signed_in(factories.make_user("clerk", is_staff=True)).get(url).status_code == 403


def _form(agent: Agent, **changes: Any) -> dict[str, Any]:
    data = {
        "slug": agent.slug, "name": agent.name, "kind": agent.kind,
        "description": agent.description, "spec": json.dumps(agent.spec),
        "input_schema": json.dumps(agent.input_schema), "owner": agent.owner_id,
        "team": agent.team_id, "endpoints": "[]", "integrations": "{}",
        "deleted_at_0": "", "deleted_at_1": "",
        "versions-TOTAL_FORMS": agent.versions.count(),
        "versions-INITIAL_FORMS": agent.versions.count(),
        "versions-MIN_NUM_FORMS": 0, "versions-MAX_NUM_FORMS": 0,
    }  # fmt: skip
    data.update(changes)
    return data


def test_a_spec_edited_in_the_admin_is_validated_and_versioned(
    admin_client: Any, root: Any, user: Any
) -> None:
    agent = factories.make_agent(user, spec={"allow_input_command": True})
    url = reverse("admin:agent_sessions_agent_change", args=[agent.pk])

    bad = admin_client.post(url, _form(agent, spec=json.dumps({"no_such_key": 1})))
    assert bad.status_code == 200 and b"errornote" in bad.content
    assert b"no_such_key" in bad.content
    agent.refresh_from_db()
    assert agent.version == 1 and agent.spec == {"allow_input_command": True}

    spec = {"allow_input_command": True, "env": {"MODE": "ci"}}
    saved = admin_client.post(url, _form(agent, spec=json.dumps(spec), name="Renamed"))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    agent.refresh_from_db()
    assert (agent.version, agent.spec, agent.name) == (2, spec, "Renamed")
    latest = AgentVersion.objects.get(agent=agent, version=2)
    assert latest.spec == spec and latest.created_by == root

    # A change of the name only is not a new version.
    admin_client.post(url, _form(agent, name="Again"))
    agent.refresh_from_db()
    assert (agent.version, agent.name) == (2, "Again")

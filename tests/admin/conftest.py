"""Fixtures for the operator admin's tests: a signed-in superuser, a staff user without
permissions, a plain user, and tasks put into each status the way the executor does it."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.test import Client

from sessions.models import Task
from sessions.services.tasks import task_claim_next
from tests import factories


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def root(db: Any) -> Any:
    return factories.make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(root: Any) -> Client:
    """A superuser signed in to the admin."""
    return signed_in(root)


def claim(task: Task) -> Task:
    """Play the executor: claim ``task`` (the next queued one of its session): ``running``."""
    claimed = task_claim_next(worker="tests", limit=1, session_id=task.session_id)
    assert [t.pk for t in claimed] == [task.pk]
    return claimed[0]


def selected_rows(html: str) -> int:
    """How many rows a changelist page lists."""
    return html.count('name="_selected_action"')


def result_list(html: str) -> str:
    """The rows of a changelist page (without its filters' sidebar)."""
    start = html.find('id="result_list"')
    return html[start : html.index("</table>", start)] if start >= 0 else ""


def links(html: str) -> list[tuple[str, str]]:
    """``(href, aria-label)`` of every labelled link of a page."""
    return [
        (unescape(href), unescape(label))
        for href, label in re.findall(r'<a href="([^"]+)" aria-label="([^"]+)">', html)
    ]

"""The database statements of a task's path (issue 13: create session + task → first event, then
the executor's claim and finish), kept from creeping up. Each budget is the most the step needs
today on SQLite or PostgreSQL; a change that adds a statement must raise it here, on purpose.

Per request: the API key, the caller's memberships with their teams (the default team is chosen
from them), the audit entry; per write, the row, its event (the session's ``last_seq`` advanced
under its row lock in one ``UPDATE … RETURNING``, the insert) and the event projectors in their
savepoint (webhook endpoints; a task's monitor settings). A task create adds the session (read,
then locked), its active tasks, the team's limits and the queue position. Before issue 13's pass
over them: 16 and 22 (claim and finish: 15 each before the ``RETURNING``); 11 and 18 before the
default team came from the memberships read. Claim and finish were 14 each before a service's
status event carried its task to the projectors (``event_task``: no read of the task, no phase
update the claim had already made) and the step projection read a batch's steps in one query;
the claim 12 before its busy check and its task were read in one statement.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions.models import Task
from sessions.services.tasks import task_claim_next, task_finish
from tests.api.helpers import API

pytestmark = pytest.mark.django_db(transaction=True)  # a create's own transaction is the outermost

SESSION_CREATE = 10
TASK_CREATE = 17
TASK_CLAIM = 11
TASK_FINISH = 12


def _statements(captured: CaptureQueriesContext) -> list[str]:
    """What reached the database, without the transaction bracketing SQLite's driver reports
    and psycopg's does not."""
    skip = ("BEGIN", "COMMIT", "ROLLBACK")
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(skip)]


def test_creating_a_session_and_a_task_stays_within_its_statements(
    api_client: Any, agent: Any
) -> None:
    api_client.post(f"{API}/sessions", {"agent": agent.slug}, format="json")  # warm caches
    with CaptureQueriesContext(connection) as session_create:
        created = api_client.post(f"{API}/sessions", {"agent": agent.slug}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["active_task_count"] == 0
    with CaptureQueriesContext(connection) as task_create:
        task = api_client.post(
            f"{API}/sessions/{created.json()['id']}/tasks",
            {"input": {"command": "true"}},
            format="json",
        )
    assert task.status_code == 201, task.content

    session_sql, task_sql = _statements(session_create), _statements(task_create)
    assert len(session_sql) <= SESSION_CREATE, "\n".join(session_sql)
    assert len(task_sql) <= TASK_CREATE, "\n".join(task_sql)
    # No savepoint inside a create's own transaction but the projectors' one (events_append).
    assert sum("SAVEPOINT" in q and "RELEASE" not in q for q in task_sql) == 1
    # The memberships are read once, though the team rate limit and the view both ask for the
    # default team and the view checks the role.
    assert sum('FROM "accounts_membership"' in q for q in session_sql) == 1


def test_claiming_and_finishing_a_task_stays_within_its_statements(
    api_client: Any, agent: Any
) -> None:
    """The executor's side: the claim (candidates, the session's lock on PostgreSQL, the task
    with its session's busy check, its ``running`` event with the root step) and the finish (the task's lock,
    its terminal event closing the steps, the session back to idle). The step projection reads
    the steps of a batch once: one query in each."""
    session = api_client.post(f"{API}/sessions", {"agent": agent.slug}, format="json").json()
    queued = api_client.post(
        f"{API}/sessions/{session['id']}/tasks", {"input": {"command": "true"}}, format="json"
    )
    assert queued.status_code == 201, queued.content
    with CaptureQueriesContext(connection) as claim:
        [task] = task_claim_next(worker="w1", limit=4)
    with CaptureQueriesContext(connection) as finish:
        task_finish(task=task, status="succeeded", result={"exit_code": 0})
    assert Task.objects.get(pk=task.pk).status == "succeeded"
    claim_sql, finish_sql = _statements(claim), _statements(finish)
    assert len(claim_sql) <= TASK_CLAIM, "\n".join(claim_sql)
    assert len(finish_sql) <= TASK_FINISH, "\n".join(finish_sql)
    for sql in (claim_sql, finish_sql):
        assert sum(q.startswith('SELECT "debugger_step"') for q in sql) == 1, "\n".join(sql)

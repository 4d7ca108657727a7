from __future__ import annotations

import pytest

from sessions.services.events import event_append
from tests import factories
from tests.api.helpers import API, error_of

pytestmark = pytest.mark.django_db

ENVELOPE_KEYS = {"seq", "session_id", "task_id", "type", "ts", "data"}


@pytest.fixture
def logged(session):
    """A session whose log holds, after ``session.created``: a task's ``task.status`` and
    five ``log`` events of that task, interleaved with five session-level ``log`` events."""
    task = factories.make_task(session)
    for n in range(5):
        event_append(session=session, task=task, type="log", data={"n": n})
        event_append(session=session, type="log", data={"n": 100 + n})
    session.refresh_from_db()
    return session, task


def test_events_are_envelopes_with_gapless_seqs(api_client, logged):
    session, task = logged

    body = api_client.get(f"{API}/sessions/{session.uuid}/events").json()

    events = body["events"]
    assert [e["seq"] for e in events] == list(range(1, session.last_seq + 1))
    assert all(set(e) == ENVELOPE_KEYS for e in events)
    assert {e["session_id"] for e in events} == {str(session.uuid)}
    status = next(e for e in events if e["type"] == "task.status")
    assert status["task_id"] == str(task.uuid)
    assert status["data"]["status"] == "queued"
    assert body["last_seq"] == session.last_seq == 12
    assert body["next_after"] == 12


def test_after_and_limit_page_through_the_log(api_client, logged):
    session, _ = logged
    url = f"{API}/sessions/{session.uuid}/events"

    first = api_client.get(url, {"after": 0, "limit": 5}).json()
    second = api_client.get(url, {"after": first["next_after"], "limit": 5}).json()
    rest = api_client.get(url, {"after": second["next_after"], "limit": 5}).json()
    end = api_client.get(url, {"after": rest["next_after"]}).json()

    seqs = [e["seq"] for page in (first, second, rest) for e in page["events"]]
    assert seqs == list(range(1, 13))
    assert (first["next_after"], second["next_after"], rest["next_after"]) == (5, 10, 12)
    assert end == {"events": [], "last_seq": 12, "next_after": 12}


@pytest.mark.parametrize(
    "params",
    [{"after": -1}, {"after": "x"}, {"limit": 0}, {"limit": 1001}, {"limit": "many"}],
)
def test_bad_cursors_are_400(api_client, session, params):
    response = api_client.get(f"{API}/sessions/{session.uuid}/events", params)

    fields = error_of(response, 400, "invalid_input")["details"]["fields"]
    assert set(fields) == set(params)


def test_limit_allows_1000(api_client, session):
    response = api_client.get(f"{API}/sessions/{session.uuid}/events", {"limit": 1000})

    assert response.status_code == 200
    assert [e["type"] for e in response.json()["events"]] == ["session.created"]


def test_task_events_hold_only_that_tasks_events(api_client, logged):
    _, task = logged
    url = f"{API}/tasks/{task.uuid}/events"

    body = api_client.get(url).json()
    page = api_client.get(url, {"after": 4, "limit": 2}).json()

    assert {e["task_id"] for e in body["events"]} == {str(task.uuid)}
    assert [e["type"] for e in body["events"]] == ["task.status"] + ["log"] * 5
    assert [e["data"]["n"] for e in body["events"][1:]] == [0, 1, 2, 3, 4]
    assert body["last_seq"] == 12
    assert body["next_after"] == body["events"][-1]["seq"]
    assert [e["seq"] for e in page["events"]] == [5, 7]
    assert page["next_after"] == 7


@pytest.mark.django_db(transaction=True)
def test_a_failing_projector_loses_only_its_own_projection(session, monkeypatch):
    """Projectors share one savepoint; when one raises (here a database error, which on
    PostgreSQL aborts the transaction without a savepoint) the events and every other
    projection are still written."""
    from django.db import connection

    from sessions.models import Event, Session
    from sessions.services import events as events_module

    def renames(target, events):
        Session.objects.filter(pk=target.pk).update(name=f"projected {len(events)}")

    def breaks(target, events):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(
        events_module,
        "_PROJECTORS",
        [*events_module._PROJECTORS, (None, breaks, False), (None, renames, False)],
    )
    saved = event_append(session=session, type="log", data={"n": 1})

    assert Event.objects.filter(pk=saved.pk).exists()
    session.refresh_from_db()
    assert session.name == "projected 1"
    assert session.last_seq == saved.seq


def test_a_nul_character_in_event_data_is_stored_as_a_replacement_character(session):
    """PostgreSQL's jsonb cannot hold U+0000: a NUL (binary output) becomes U+FFFD instead of
    failing the write, and a literal backslash-u0000 text is kept as it is."""
    from sessions.models import Event

    saved = event_append(
        session=session,
        type="process.stdout",
        data={"text": "a\x00b", "literal": "\\u0000", "nested": [{"k": "\x00"}]},
    )
    stored = Event.objects.get(pk=saved.pk).data
    assert stored == {"text": "a\ufffdb", "literal": "\\u0000", "nested": [{"k": "\ufffd"}]}

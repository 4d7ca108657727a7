"""Team and session secrets: the write-only API, roles, encryption at rest, injection into a
real sandbox (environment and files) and masking in events, streamed chunks, errors and logs.

The masker's own chunk handling is unit-tested in tests/test_masking.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings

from accounts.models import AuditEntry, Secret
from accounts.secrets import secret_set, secrets_for_run
from sandboxes.services import sandbox_exec
from sessions.executors import Executor
from sessions.models import Event
from sessions.services import masking
from sessions.services.events import EventBuffer, event_append
from tests import factories
from tests.helpers import events_of, wait_terminal

VALUE = "hunter2-Zq8#xP0-s3cr3t"
HALF = len(VALUE) // 2
CONFIGURED_WORKSPACES = django_settings.WORKSPACE_ROOT  # the sandbox can reach this one


def _team_url(team: Any, name: str = "") -> str:
    return f"/api/v1/teams/{team.uuid}/secrets" + (f"/{name}" if name else "")


def _session_url(session: Any, name: str = "") -> str:
    return f"/api/v1/sessions/{session.uuid}/secrets" + (f"/{name}" if name else "")


def _client_of(user: Any, team: Any, scopes: list[str] | None = None) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    token = factories.make_token(user, scopes=scopes, team=team)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _logged_in(user: Any) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(user)
    return client


# The API ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_values_are_write_only_and_encrypted_at_rest(api_client: Any, user: Any, session: Any):
    team = factories.team_of(user)
    created = api_client.put(_team_url(team, "MY_SECRET"), {"value": VALUE}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["name"] == "MY_SECRET" and created.json()["scope"] == "team"
    assert "value" not in created.json()
    replaced = api_client.put(_team_url(team, "MY_SECRET"), {"value": VALUE + "!"}, format="json")
    assert replaced.status_code == 200
    responses = [
        created,
        replaced,
        api_client.get(_team_url(team)),
        api_client.get(_team_url(team, "MY_SECRET")),
        api_client.get(_session_url(session)),
    ]
    for response in responses:
        assert response.status_code in (200, 201)
        assert VALUE not in response.content.decode()
    listed = responses[2].json()
    assert [s["name"] for s in listed["results"]] == ["MY_SECRET"]
    assert set(listed["results"][0]) == {"name", "scope", "created_at", "updated_at", "created_by"}

    row = Secret.objects.get(team=team, name="MY_SECRET")
    assert VALUE not in row.ciphertext and row.ciphertext.startswith("gAAAA")  # a Fernet token
    assert secrets_for_run(session) == {"MY_SECRET": VALUE + "!"}
    audit = AuditEntry.objects.filter(action="secret.set").order_by("created_at")
    assert [e.details["created"] for e in audit] == [True, False]
    assert all(VALUE not in json.dumps(e.details) for e in audit)


@pytest.mark.django_db
def test_session_secrets_override_team_secrets(api_client: Any, user: Any, session: Any):
    team = factories.team_of(user)
    api_client.put(_team_url(team, "SHARED"), {"value": "team-value-1"}, format="json")
    api_client.put(_team_url(team, "TEAM_ONLY"), {"value": "team-value-2"}, format="json")
    r = api_client.put(_session_url(session, "SHARED"), {"value": "session-value"}, format="json")
    assert r.status_code == 201 and r.json()["scope"] == "session"
    listed = api_client.get(_session_url(session)).json()["results"]
    assert [(s["name"], s["scope"]) for s in listed] == [
        ("SHARED", "session"),
        ("TEAM_ONLY", "team"),
    ]
    assert secrets_for_run(session) == {"SHARED": "session-value", "TEAM_ONLY": "team-value-2"}
    other = factories.make_session(user, session.agent)
    assert secrets_for_run(other)["SHARED"] == "team-value-1"

    assert api_client.delete(_session_url(session, "SHARED")).status_code == 204
    gone = api_client.delete(_session_url(session, "SHARED"))
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "secret_not_found"
    # A team secret is not deleted through a session.
    assert api_client.delete(_session_url(session, "TEAM_ONLY")).status_code == 404
    assert secrets_for_run(session)["SHARED"] == "team-value-1"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("lower_case", {"value": "x"}, "name"),
        ("1DIGIT", {"value": "x"}, "name"),
        ("OK_NAME", {"value": ""}, "value"),
        ("OK_NAME", {}, "value"),
        ("OK_NAME", {"value": "a\x00b"}, "value"),
        ("OK_NAME", {"value": "x" * (64 * 1024 + 1)}, "value"),
    ],
)
def test_bad_names_and_values_are_400(api_client: Any, user: Any, name: str, body: Any, field):
    r = api_client.put(_team_url(factories.team_of(user), name), body, format="json")
    assert r.status_code == 400, r.content
    assert field in r.json()["error"]["details"]["fields"]
    assert not Secret.objects.exists()


@pytest.mark.django_db
def test_whitespace_is_kept_and_64_kib_is_accepted(api_client: Any, user: Any, session: Any):
    team = factories.team_of(user)
    pem = "-----BEGIN KEY-----\nabc\n-----END KEY-----\n"
    assert api_client.put(_team_url(team, "PEM"), {"value": pem}, format="json").status_code == 201
    big = "y" * (64 * 1024)
    assert api_client.put(_team_url(team, "BIG"), {"value": big}, format="json").status_code == 201
    assert secrets_for_run(session) == {"PEM": pem, "BIG": big}


@pytest.mark.django_db
def test_roles_viewer_403_member_limited_stranger_404(
    user: Any, other_user: Any, other_client: Any, session: Any
):
    team = factories.team_of(user)
    secret_set(team=team, name="MY_SECRET", value=VALUE, user=user)
    viewer, member = factories.make_user("vic"), factories.make_user("meg")
    factories.add_member(team, viewer, "viewer")
    factories.add_member(team, member, "member")
    everything_but_admin = ["agents:write", "sessions:write", "tasks:write"]
    as_viewer = _client_of(viewer, team, everything_but_admin)
    as_member = _client_of(member, team, everything_but_admin)
    body = {"value": "v"}

    for url in (_team_url(team), _team_url(team, "MY_SECRET"), _session_url(session)):
        assert as_viewer.get(url).status_code == 403
        assert other_client.get(url).status_code == 404
        assert as_member.get(url).status_code == 200
    assert as_viewer.put(_team_url(team, "X"), body, format="json").status_code == 403
    assert as_viewer.put(_session_url(session, "X"), body, format="json").status_code == 403
    assert as_viewer.delete(_team_url(team, "MY_SECRET")).status_code == 403
    assert other_client.put(_team_url(team, "X"), body, format="json").status_code == 404
    assert other_client.put(_session_url(session, "X"), body, format="json").status_code == 404
    assert other_client.delete(_team_url(team, "MY_SECRET")).status_code == 404
    # Members set session secrets; team secrets need an admin.
    assert as_member.put(_team_url(team, "X"), body, format="json").status_code == 403
    assert as_member.delete(_team_url(team, "MY_SECRET")).status_code == 403
    assert as_member.put(_session_url(session, "X"), body, format="json").status_code == 201
    by_role = _logged_in(member)  # a browser session has every scope: the role decides
    refused = by_role.put(_team_url(team, "X"), body, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["required_role"] == "admin"
    admin = factories.make_user("ada")
    factories.add_member(team, admin, "admin")
    assert _client_of(admin, team).put(_team_url(team, "X"), body, format="json").status_code == 201
    assert Secret.objects.filter(name="X").count() == 2


@pytest.mark.django_db
def test_scopes(user: Any, session: Any):
    team = factories.team_of(user)
    reader = _client_of(user, team, scopes=["sessions:read"])
    writer = _client_of(user, team, scopes=["sessions:write"])
    assert reader.get(_team_url(team)).status_code == 200
    denied = reader.put(_team_url(team, "X"), {"value": "v"}, format="json")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "insufficient_scope"
    assert writer.put(_team_url(team, "X"), {"value": "v"}, format="json").status_code == 403
    assert reader.put(_session_url(session, "X"), {"value": "v"}, format="json").status_code == 403
    assert writer.put(_session_url(session, "X"), {"value": "v"}, format="json").status_code == 201


@pytest.mark.django_db
def test_a_ciphertext_copied_to_another_row_does_not_open(user: Any, other_user: Any):
    mine, _ = secret_set(team=factories.team_of(user), name="TOKEN", value=VALUE)
    theirs, _ = secret_set(team=factories.team_of(other_user), name="TOKEN", value="decoy")
    Secret.objects.filter(pk=theirs.pk).update(ciphertext=mine.ciphertext)
    session = factories.make_session(other_user)
    assert secrets_for_run(session) == {}
    with pytest.raises(Exception) as caught:
        secrets_for_run(session, require=["TOKEN"])
    assert getattr(caught.value, "code", None) == "secret_unreadable"


# Masking outside a sandbox: the event pipeline and logs -----------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_buffer_masks_a_value_split_across_chunks_and_flush_windows(
    user: Any, session: Any
) -> None:
    task = await sync_to_async(factories.make_task)(session)
    buffer = EventBuffer(
        session=session,
        task_id=task.pk,
        task_uuid=str(task.uuid),
        interval_ms=0,
        masker=masking.Masker({"MY_SECRET": VALUE}),
    )
    buffer.start()
    buffer.emit("process.stdout", {"process_id": "p1", "text": "before " + VALUE[:HALF]})
    await buffer.flush()  # the first half must not be written on its own
    buffer.emit("process.stdout", {"process_id": "p1", "text": VALUE[HALF:] + " after\n"})
    buffer.emit("process.stdout", {"process_id": "p1", "text": "tail " + VALUE[:3]})
    buffer.emit("process.exit", {"process_id": "p1", "exit_code": 0, "note": VALUE})
    buffer.emit("message.delta", {"message_id": "m1", "text": VALUE[:5]})
    await buffer.close()  # releases the held tail of m1
    events = await sync_to_async(events_of)(task)
    stdout = "".join(e.data["text"] for e in events if e.type == "process.stdout")
    assert stdout == "before [secret:MY_SECRET] after\ntail " + VALUE[:3]
    exit_event = next(e for e in events if e.type == "process.exit")
    assert exit_event.data["note"] == "[secret:MY_SECRET]"
    types = [e.type for e in events]
    assert types.index("process.exit") > max(
        i for i, t in enumerate(types) if t == "process.stdout"
    ), "a held tail is released before the event that ends its stream"
    assert [e.data["text"] for e in events if e.type == "message.delta"] == [VALUE[:5]]
    assert VALUE[:HALF] not in json.dumps([e.data for e in events])


@pytest.mark.django_db
def test_registered_values_are_masked_in_events_and_log_records(session: Any, caplog: Any) -> None:
    handle = masking.register(session.pk, {"MY_SECRET": VALUE})
    try:
        event = event_append(session=session, type="log", data={"message": f"key={VALUE}"})
        logging.getLogger("tests.secrets").warning("using %s now", VALUE)
        try:
            raise RuntimeError(f"boom {VALUE}")
        except RuntimeError:
            logging.getLogger("tests.secrets").exception("failed")
    finally:
        masking.unregister(handle)
    assert Event.objects.get(pk=event.pk).data == {"message": "key=[secret:MY_SECRET]"}
    assert VALUE not in caplog.text
    assert "using [secret:MY_SECRET] now" in caplog.text
    assert "boom [secret:MY_SECRET]" in caplog.text
    logging.getLogger("tests.secrets").warning("after %s", "the run")
    assert caplog.records[-1].getMessage() == "after the run"


# Injection into a real sandbox ------------------------------------------------------------------


@pytest.fixture
def sandbox_workspaces(settings: Any) -> None:
    """Real sandboxes need the configured workspace root (tests/api/conftest.py swaps it)."""
    settings.WORKSPACE_ROOT = CONFIGURED_WORKSPACES


@pytest.fixture
async def executor(transactional_db: Any, sandbox_workspaces: None) -> AsyncIterator[Executor]:
    ex = Executor(concurrency=2)
    await ex.start()
    yield ex
    await ex.stop()


async def _run(user: Any, spec_secrets: Any, command: str, **secrets: str) -> Any:
    def setup() -> Any:
        agent = factories.make_agent(
            user, spec={"allow_input_command": True, "secrets": spec_secrets}
        )
        session = factories.make_session(user, agent)
        for name, value in secrets.items():
            secret_set(team=session.team, name=name, value=value, user=user)
        return factories.make_task(session, input={"command": command})

    return await sync_to_async(setup)()


async def _everything_of(task: Any) -> tuple[list[Event], str]:
    events = await sync_to_async(events_of)(task)
    blob = json.dumps([e.data for e in events] + [task.result, task.error, task.input], default=str)
    return events, blob


@pytest.mark.sandbox
@pytest.mark.django_db(transaction=True)
async def test_an_env_secret_reaches_the_process_and_is_masked_everywhere(
    executor: Any, user: Any
) -> None:
    command = (
        'echo "got:$MY_SECRET"; [ "$(printf %s "$MY_SECRET" | sha256sum)" = "$SUM" ] && '
        'echo match; env | grep -c "$OTHER_PREFIX" || true; echo "$MY_SECRET" >&2; exit 3'
    )
    digest = hashlib.sha256(VALUE.encode()).hexdigest() + "  -"
    task = await _run(
        user, ["MY_SECRET"], f"SUM='{digest}' OTHER_PREFIX=not-injected-value; {command}",
        MY_SECRET=VALUE, OTHER=VALUE[::-1] + "not-injected-value",
    )  # fmt: skip
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "failed" and task.error["code"] == "command_failed"
    events, blob = await _everything_of(task)
    stdout = "".join(e.data["text"] for e in events if e.type == "process.stdout")
    stderr = "".join(e.data["text"] for e in events if e.type == "process.stderr")
    assert stdout == "got:[secret:MY_SECRET]\nmatch\n0\n"  # the value was there; OTHER was not
    assert stderr == "[secret:MY_SECRET]\n"
    assert VALUE not in blob


@pytest.mark.sandbox
@pytest.mark.django_db(transaction=True)
async def test_a_secret_split_across_two_output_chunks_is_masked(executor: Any, user: Any) -> None:
    command = (
        'printf "before %s" "${MY_SECRET:0:' + str(HALF) + '}"; sleep 0.3; '
        'printf "%s after" "${MY_SECRET:' + str(HALF) + '}"; sleep 0.3; '
        'printf " end %s" "${MY_SECRET:0:4}"'
    )
    task = await _run(user, [{"name": "MY_SECRET", "as": "env"}], command, MY_SECRET=VALUE)
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    events, blob = await _everything_of(task)
    chunks = [e.data["text"] for e in events if e.type == "process.stdout"]
    assert "".join(chunks) == "before [secret:MY_SECRET] after end " + VALUE[:4]
    assert len(chunks) >= 2, chunks  # the output did arrive in pieces
    assert chunks[0] == "before ", "the text before the secret is not held back"
    assert VALUE not in blob and VALUE[:HALF] not in blob and VALUE[HALF:] not in blob


@pytest.mark.sandbox
@pytest.mark.django_db(transaction=True)
async def test_a_file_secret_is_readable_by_the_process_and_removed_after(
    executor: Any, user: Any
) -> None:
    command = (
        'f="$AGENT_SECRETS_DIR/MY_SECRET"; echo "$AGENT_SECRETS_DIR"; stat -c "%a" "$f"; '
        'stat -c "%a" "$AGENT_SECRETS_DIR"; sha256sum < "$f"; cat "$AGENT_SECRETS_DIR/kube/pem"; '
        'echo; [ -z "${MY_SECRET:-}" ] && echo no-env; ls -A /workspace'
    )
    spec = [{"name": "MY_SECRET", "as": "file"}, {"name": "PEM", "as": "file", "path": "kube/pem"}]
    task = await _run(user, spec, command, MY_SECRET=VALUE, PEM="-----BEGIN-----\nAAAABBBBCCCC\n")
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    events, blob = await _everything_of(task)
    stdout = "".join(e.data["text"] for e in events if e.type == "process.stdout")
    digest = hashlib.sha256(VALUE.encode()).hexdigest()
    assert stdout == f"/tmp/.secrets\n600\n700\n{digest}  -\n[secret:PEM]\nno-env\n.agent\n"
    assert VALUE not in blob and "AAAABBBBCCCC" not in blob

    # Gone after the task (the session's sandbox still runs; its /tmp has no trace of them).
    execution = await sandbox_exec(session=task.session, argv=["ls", "-A", "/tmp"])
    listing = b"".join([e.data async for e in execution if e.stream == "stdout"])
    assert b".secrets" not in listing


@pytest.mark.sandbox
@pytest.mark.django_db(transaction=True)
async def test_a_missing_secret_fails_the_task_with_secret_not_found(
    executor: Any, user: Any
) -> None:
    task = await _run(user, ["MY_SECRET", "NOPE"], "echo should-not-run", MY_SECRET=VALUE)
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "failed"
    assert task.error["code"] == "secret_not_found"
    assert task.error["details"]["name"] == "NOPE"
    events, blob = await _everything_of(task)
    assert not [e for e in events if e.type.startswith("process.")]
    assert VALUE not in blob


def test_an_unknown_secret_entry_is_refused_in_the_spec(db: Any, user: Any) -> None:
    from runtime_project.exceptions import InvalidInput

    for bad in (["lower"], [{"name": "X", "as": "socket"}], [{"name": "X", "path": "a"}],
                [{"name": "X", "as": "file", "path": "/etc/passwd"}]):  # fmt: skip
        with pytest.raises(InvalidInput):
            factories.make_agent(user, spec={"secrets": bad})


@pytest.mark.sandbox
@pytest.mark.django_db(transaction=True)
async def test_an_llm_agents_tools_get_the_secret_and_neither_model_nor_log_sees_it(
    executor: Any, user: Any, llm: Any
) -> None:
    from sessions.runners.scripted_llm import Turn

    llm.add(
        Turn(tool_calls=[{"name": "shell", "arguments": json.dumps({"command": "echo $MY_SECRET"})}]),
        Turn(chunks=["The key is ", VALUE[:5], VALUE[5:HALF], VALUE[HALF:], "."]),
    )  # fmt: skip

    def setup() -> Any:
        spec = {"model": {"base_url": llm.base_url, "name": "scripted-1"}, "max_retries": 0,
                "tools": ["shell"], "secrets": ["MY_SECRET"]}  # fmt: skip
        agent = factories.make_agent(user, kind="llm", spec=spec)
        session = factories.make_session(user, agent)
        secret_set(team=session.team, name="MY_SECRET", value=VALUE)
        return factories.make_task(session, input={"message": "What is the key?"})

    task = await sync_to_async(setup)()
    executor.kick()
    task = await wait_terminal(task)
    assert task.status == "succeeded", task.error
    events, blob = await _everything_of(task)
    result = next(e.data for e in events if e.type == "tool.result")
    assert result["output"] == "exit_code: 0\n[secret:MY_SECRET]\n"  # the shell had the value
    deltas = "".join(e.data["text"] for e in events if e.type == "message.delta")
    assert deltas.endswith("The key is [secret:MY_SECRET].")
    assert task.result["text"] == "The key is [secret:MY_SECRET]."
    assert VALUE not in blob and VALUE[:HALF] not in blob
    assert VALUE not in json.dumps(llm.requests)  # the tool output sent to the model was masked

"""Stored provider credentials (``/api/v1/credentials``), their encryption at rest and key
rotation, the runner's lookup (``credential_secret``), team access (members read, admins
write, strangers get 404), the admin, and ``/api/v1/models``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse

from providers import crypto
from providers.models import ProviderCredential
from providers.selectors import credential_secret, credential_secret_for_agent
from providers.services import credential_create, credential_update
from runtime_project.exceptions import Conflict, InvalidInput, NotFound
from sessions.execution import _error_of
from sessions.runners.llm.runner import LlmRunner, api_key_for
from tests import factories
from tests.api.helpers import API, error_of
from tests.factories import team_of

pytestmark = pytest.mark.django_db

SECRET = "sk-live-0123456789abcdefSECRETabcd"
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def llm_agent(owner: Any, slug: str, model: str, **extra: Any) -> Any:
    spec = {"model": {"base_url": "https://llm.example.com/v1", "name": model, **extra}}
    return factories.make_agent(owner, slug=slug, kind="llm", spec=spec)


def run_of(agent: Any) -> Any:
    """The bits of a TaskContext ``api_key_for`` reads: the task, whose agent runs."""
    return SimpleNamespace(task=SimpleNamespace(agent_id=agent.pk), session=None)


def raw_secret_column(pk: int) -> str:
    """What the database holds, read past the ORM."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM providers_providercredential WHERE id = %s", [pk])
        value = cursor.fetchone()[0]
    return bytes(value).decode() if isinstance(value, bytes | memoryview) else value


@pytest.fixture
def credential(user: Any) -> ProviderCredential:
    return credential_create(owner=user, name="openai-main", provider="openai", secret=SECRET)


# REST ------------------------------------------------------------------------------------------


def test_create_list_get_rotate_and_delete_never_show_the_secret(api_client, agent):
    bodies: list[bytes] = []

    def call(method: str, path: str, data: Any = None) -> Any:
        response = getattr(api_client, method)(f"{API}{path}", data, format="json")
        bodies.append(response.content)
        return response

    created = call("post", "/credentials", {"name": "openai-main", "secret": SECRET})
    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == {
        "id", "name", "provider", "agent", "team", "hint", "created_at", "updated_at",
        "last_used_at",
    }  # fmt: skip
    assert (body["name"], body["provider"], body["agent"], body["hint"]) == (
        "openai-main", "openai", None, "…abcd",
    )  # fmt: skip
    team = team_of(agent.owner)
    assert body["team"] == {"id": str(team.uuid), "slug": team.slug}
    cid = body["id"]

    listed = call("get", "/credentials").json()
    assert [c["id"] for c in listed["results"]] == [cid]
    assert call("get", f"/credentials/{cid}").json()["hint"] == "…abcd"

    rotated = call("patch", f"/credentials/{cid}", {"secret": "sk-rotated-9876543210wxyz"})
    assert rotated.status_code == 200 and rotated.json()["hint"] == "…wxyz"
    restricted = call("patch", f"/credentials/{cid}", {"agent": agent.slug}).json()
    assert restricted["agent"] == str(agent.uuid)
    assert call("patch", f"/credentials/{cid}", {"agent": None}).json()["agent"] is None

    assert call("delete", f"/credentials/{cid}").status_code == 204
    error_of(call("get", f"/credentials/{cid}"), 404, "credential_not_found")

    for content in bodies:
        assert SECRET.encode() not in content
        assert b"sk-rotated-9876543210wxyz" not in content
        assert b"gAAAA" not in content  # no Fernet token either


def test_the_database_holds_only_ciphertext(api_client):
    cid = api_client.post(
        f"{API}/credentials", {"name": "k", "secret": SECRET}, format="json"
    ).json()["id"]
    row = ProviderCredential.objects.get(uuid=cid)

    stored = raw_secret_column(row.pk)

    assert SECRET not in stored and SECRET[-12:] not in stored
    assert crypto.decrypt(stored) == SECRET


def test_a_stranger_gets_404(other_client, credential):
    path = f"{API}/credentials/{credential.uuid}"

    error_of(other_client.get(path), 404, "credential_not_found")
    error_of(other_client.patch(path, {"secret": "sk-stolen-0000000000"}, format="json"), 404)
    error_of(other_client.delete(path), 404)
    assert other_client.get(f"{API}/credentials").json()["results"] == []
    error_of(other_client.get(f"{API}/credentials/not-a-uuid"), 404)
    assert credential_secret(team=credential.team, name="openai-main", agent=None) == SECRET


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "no spaces!", "secret": SECRET}, "name"),
        ({"name": "ok", "secret": ""}, "secret"),
        ({"name": "ok", "secret": "   "}, "secret"),
        ({"name": "ok", "secret": "x" * 4097}, "secret"),
        ({"name": "ok", "secret": "sk-line\nbreak-000000"}, "secret"),
        ({"name": "ok", "secret": SECRET, "provider": "mistral"}, "provider"),
        ({"name": "ok"}, "secret"),
    ],
)
def test_bad_input_is_400_with_field_details(api_client, payload, field):
    response = api_client.post(f"{API}/credentials", payload, format="json")

    error = error_of(response, 400, "invalid_input")
    assert field in error["details"]["fields"], error
    assert b"xxxxxxxxxxxxxxxx" not in response.content  # the value is never echoed
    assert ProviderCredential.objects.count() == 0


def test_a_secret_of_exactly_4_kib_is_accepted(api_client):
    response = api_client.post(
        f"{API}/credentials", {"name": "big", "secret": "y" * 4096}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["hint"] == "…yyyy"


def test_an_agent_of_another_team_is_404(api_client, other_user, credential):
    public = factories.make_agent(other_user, slug="theirs", is_public=True)

    error = error_of(
        api_client.post(
            f"{API}/credentials",
            {"name": "x", "secret": SECRET, "agent": str(public.uuid)},
            format="json",
        ),
        404,
        "not_found",
    )
    assert error["message"] == "Agent not found."
    error_of(
        api_client.patch(
            f"{API}/credentials/{credential.uuid}", {"agent": "theirs"}, format="json"
        ),
        404,
    )
    with pytest.raises(NotFound):
        credential_create(owner=credential.owner, name="y", provider="openai", secret=SECRET,
                          agent=public)  # fmt: skip
    with pytest.raises(NotFound):  # the credential's team decides, not the agent's author
        credential_create(owner=other_user, team=credential.team, name="z", provider="openai",
                          secret=SECRET, agent=public)  # fmt: skip


def test_a_taken_name_is_409_and_an_empty_patch_is_400(api_client, credential):
    error_of(
        api_client.post(
            f"{API}/credentials", {"name": "openai-main", "secret": SECRET}, format="json"
        ),
        409,
        "credential_name_taken",
    )
    error_of(api_client.patch(f"{API}/credentials/{credential.uuid}", {}, format="json"), 400)
    error_of(
        api_client.patch(f"{API}/credentials/{credential.uuid}", {"secret": ""}, format="json"),
        400,
        "invalid_input",
    )


@pytest.mark.parametrize("path", ["/credentials", "/credentials/x", "/models"])
def test_unauthenticated_is_401_in_the_error_shape(anon_client, path):
    error_of(anon_client.get(f"{API}{path}"), 401, "not_authenticated")


# Encryption keys -------------------------------------------------------------------------------


def test_key_rotation_keeps_old_tokens_readable_and_re_encrypts_on_update(settings, user):
    settings.CREDENTIALS_ENCRYPTION_KEYS = [KEY_A]
    credential = credential_create(owner=user, name="k", provider="openai", secret=SECRET)
    Fernet(KEY_A.encode()).decrypt(credential.secret.encode())  # encrypted under A

    settings.CREDENTIALS_ENCRYPTION_KEYS = f"{KEY_B},{KEY_A}"  # as the env var gives it
    assert credential_secret(team=team_of(user), name="k", agent=None) == SECRET  # A still decrypts

    credential = credential_update(credential=credential)  # no new secret: re-encrypted
    token = raw_secret_column(credential.pk).encode()
    assert Fernet(KEY_B.encode()).decrypt(token) == SECRET.encode()
    with pytest.raises(InvalidToken):
        Fernet(KEY_A.encode()).decrypt(token)

    settings.CREDENTIALS_ENCRYPTION_KEYS = [KEY_B]  # A dropped: still readable
    assert credential_secret(team=team_of(user), name="k", agent=None) == SECRET
    credential_update(credential=credential, secret="sk-new-secret-000000001")
    assert credential_secret(team=team_of(user), name="k", agent=None) == "sk-new-secret-000000001"


def test_lost_keys_make_a_credential_unreadable_until_a_new_secret_is_stored(settings, user):
    settings.CREDENTIALS_ENCRYPTION_KEYS = [KEY_A]
    credential = credential_create(owner=user, name="k", provider="openai", secret=SECRET)
    settings.CREDENTIALS_ENCRYPTION_KEYS = [KEY_B]

    with pytest.raises(Conflict) as excinfo:
        credential_secret(team=team_of(user), name="k", agent=None)
    assert excinfo.value.code == "credential_unreadable"
    with pytest.raises(Conflict):
        credential_update(credential=credential)
    with pytest.raises(CommandError):
        call_command("rotate_credential_keys")

    credential_update(credential=credential, secret="sk-stored-again-00000")
    assert credential_secret(team=team_of(user), name="k", agent=None) == "sk-stored-again-00000"


def test_the_rotate_command_re_encrypts_everything_under_the_first_key(settings, user):
    settings.CREDENTIALS_ENCRYPTION_KEYS = [KEY_A]
    rows = [
        credential_create(owner=user, name=f"k{i}", provider="openai", secret=f"{SECRET}{i}")
        for i in range(3)
    ]
    settings.CREDENTIALS_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    call_command("rotate_credential_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115

    for i, row in enumerate(rows):
        token = raw_secret_column(row.pk).encode()
        assert Fernet(KEY_B.encode()).decrypt(token).decode() == f"{SECRET}{i}"


def test_the_default_key_is_derived_from_secret_key(settings):
    settings.CREDENTIALS_ENCRYPTION_KEYS = []
    settings.SECRET_KEY = "one"
    token = crypto.encrypt("s")

    assert Fernet(crypto.derive_key("one").encode()).decrypt(token.encode()) == b"s"
    settings.SECRET_KEY = "two"  # rotating SECRET_KEY alone loses the credentials
    with pytest.raises(InvalidToken):
        crypto.decrypt(token)
    with pytest.raises(ValueError, match="key 2"):
        crypto.check_keys([KEY_A, "not-a-key"])


# The runner's lookup ---------------------------------------------------------------------------


def test_credential_secret_honours_the_agent_restriction(user, other_user):
    mine, other_mine = llm_agent(user, "a1", "m"), llm_agent(user, "a2", "m")
    credential_create(owner=user, name="only-a1", provider="openai", secret=SECRET, agent=mine)
    credential_create(owner=user, name="any", provider="openai", secret="sk-any-000000000000")

    assert credential_secret(team=team_of(user), name="only-a1", agent=mine) == SECRET
    for agent in (other_mine, None):
        with pytest.raises(NotFound) as excinfo:
            credential_secret(team=team_of(user), name="only-a1", agent=agent)
        assert excinfo.value.code == "credential_not_found"
        assert SECRET not in str(excinfo.value.as_dict())
    assert (
        credential_secret(team=team_of(user), name="any", agent=other_mine) == "sk-any-000000000000"
    )
    with pytest.raises(NotFound):  # names are per team
        credential_secret(team=team_of(other_user), name="any", agent=None)
    with pytest.raises(NotFound):
        credential_secret(team=team_of(user), name="missing", agent=mine)
    with pytest.raises(Conflict) as mismatch:
        credential_secret(team=team_of(user), name="any", agent=mine, provider="anthropic")
    assert mismatch.value.code == "credential_provider_mismatch"
    used = ProviderCredential.objects.get(name="only-a1")
    assert used.last_used_at is not None
    assert ProviderCredential.objects.get(name="any").last_used_at is not None


def test_the_runner_takes_the_key_from_the_agent_teams_credential(user, other_user, monkeypatch):
    assert LlmRunner.validate_spec(
        {"model": {"base_url": "https://x", "name": "m", "credential": "main"}}
    ) is None  # fmt: skip
    with pytest.raises(InvalidInput):
        LlmRunner.validate_spec({"model": {"base_url": "https://x", "name": "m", "credential": ""}})
    agent = llm_agent(user, "writer", "m", credential="main")
    credential_create(owner=user, name="main", provider="openai", secret=SECRET, agent=agent)
    # The caller's own credential of the same name is never used for someone else's agent.
    credential_create(owner=other_user, name="main", provider="openai", secret="sk-caller-0000")
    model = agent.spec["model"]

    run: Any = SimpleNamespace(task=SimpleNamespace(agent_id=agent.pk), session=None)
    assert async_to_sync(api_key_for)(run, model) == SECRET
    by_session: Any = SimpleNamespace(task=None, session=SimpleNamespace(agent_id=agent.pk))
    assert async_to_sync(api_key_for)(by_session, model) == SECRET

    monkeypatch.setenv("LLM_TEST_KEY", "from-env")
    assert async_to_sync(api_key_for)(run, {"api_key_env": "LLM_TEST_KEY"}) == "from-env"

    other = llm_agent(user, "critic", "m")  # main is restricted to "writer"
    with pytest.raises(NotFound) as excinfo:
        async_to_sync(api_key_for)(run_of(other), model)
    # What the executor records as the task's error.
    assert _error_of(excinfo.value)["code"] == "credential_not_found"
    with pytest.raises(NotFound):
        credential_secret_for_agent(agent_id=10**9, name="main")


# Admin -----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(db: Any) -> Client:
    client = Client()
    client.force_login(factories.make_user("root", is_staff=True, is_superuser=True))
    return client


def test_the_admin_lists_searches_and_never_shows_the_secret(admin_client, credential):
    changelist = reverse("admin:providers_providercredential_changelist")
    listed = admin_client.get(changelist, {"q": "openai-main"})
    change = admin_client.get(
        reverse("admin:providers_providercredential_change", args=[credential.pk])
    )

    for response in (listed, change):
        assert response.status_code == 200
        html = response.content.decode()
        assert SECRET not in html
        assert credential.secret not in html  # nor the ciphertext
        assert "…abcd" in html
    assert 'name="new_secret"' in change.content.decode()


def test_the_admin_sets_a_new_secret_write_only(admin_client, user, credential):
    url = reverse("admin:providers_providercredential_change", args=[credential.pk])
    form = {
        "owner": user.pk, "team": credential.team.pk, "name": "openai-main", "provider": "openai",
        "agent": "",
    }  # fmt: skip

    assert admin_client.post(url, {**form, "new_secret": ""}).status_code == 302
    assert credential_secret(team=team_of(user), name="openai-main", agent=None) == SECRET  # kept
    assert (
        admin_client.post(url, {**form, "new_secret": "sk-admin-set-0000wxyz"}).status_code == 302
    )
    assert (
        credential_secret(team=team_of(user), name="openai-main", agent=None)
        == "sk-admin-set-0000wxyz"
    )
    assert ProviderCredential.objects.get(pk=credential.pk).hint == "…wxyz"

    add = reverse("admin:providers_providercredential_add")
    missing = admin_client.post(add, {**form, "name": "second", "new_secret": ""})
    assert missing.status_code == 200 and not ProviderCredential.objects.filter(name="second")
    assert (
        admin_client.post(add, {**form, "name": "second", "new_secret": SECRET}).status_code == 302
    )
    assert SECRET not in raw_secret_column(ProviderCredential.objects.get(name="second").pk)


# /models ---------------------------------------------------------------------------------------


def test_models_lists_the_callers_agents_and_the_catalogue(
    settings, api_client, other_client, user, other_user, agent
):
    settings.LLM_MODELS = [
        {"id": "gpt-4o-mini", "provider": "openai",
         "pricing": {"prompt_per_mtok": 0.15, "completion_per_mtok": 0.6}},
        {"id": "o3", "provider": "openai", "base_url": "https://tok3n@gateway.example.com/v1"},
    ]  # fmt: skip
    llm_agent(user, "writer", "gpt-4o-mini", api_key_env="OPENAI_API_KEY")
    llm_agent(user, "critic", "claude-x", provider="anthropic")
    llm_agent(user, "dup", "gpt-4o-mini")
    public = llm_agent(other_user, "pub-llm", "gpt-4o-mini")
    public.is_public = True
    public.save()
    shadowed = llm_agent(other_user, "dup", "shadowed-model")
    shadowed.is_public = True
    shadowed.save()
    llm_agent(other_user, "private-llm", "private-model")

    response = api_client.get(f"{API}/models")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    agents = [e for e in body["data"] if e["object"] == "agent"]
    models = [e for e in body["data"] if e["object"] == "model"]
    # Agents of every kind are listed; only llm agents carry a model.
    command = [e for e in agents if e["id"] == agent.slug]
    assert command and command[0]["kind"] == "command" and "model" not in command[0]
    agents = [{k: e[k] for k in ("id", "object", "owned_by", "model")}
              for e in agents if e["kind"] == "llm"]  # fmt: skip
    assert agents == [
        {"id": "critic", "object": "agent", "owned_by": "alice",
         "model": {"provider": "anthropic", "name": "claude-x"}},
        {"id": "dup", "object": "agent", "owned_by": "alice",
         "model": {"provider": "openai", "name": "gpt-4o-mini"}},
        {"id": "pub-llm", "object": "agent", "owned_by": "mallory",
         "model": {"provider": "openai", "name": "gpt-4o-mini"}},
        {"id": "writer", "object": "agent", "owned_by": "alice",
         "model": {"provider": "openai", "name": "gpt-4o-mini"}},
    ]  # fmt: skip
    assert models == [
        {"id": "claude-x", "object": "model", "provider": "anthropic", "agents": ["critic"]},
        {"id": "gpt-4o-mini", "object": "model", "provider": "openai",
         "agents": ["dup", "pub-llm", "writer"],
         "pricing": {"prompt_per_mtok": 0.15, "completion_per_mtok": 0.6}},
        {"id": "o3", "object": "model", "provider": "openai", "agents": []},
    ]  # fmt: skip
    text = response.content.decode()
    for leaked in ("base_url", "llm.example.com", "tok3n", "api_key", "private"):
        assert leaked not in text

    theirs = {e["id"] for e in other_client.get(f"{API}/models").json()["data"]}
    assert {"writer", "critic", "claude-x"}.isdisjoint(theirs)
    assert {"pub-llm", "private-llm", "private-model", "dup", "shadowed-model"} <= theirs

"""Shared fixtures: personas (``user`` owns things, ``other_user`` is a stranger), API clients
authenticated with a Bearer token, and a ``command`` agent with a session on it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from sandboxes.backends import _cgroup as cgroups
from sandboxes.backends._local_lifecycle import stop_owned
from sandboxes.backends._procs import descendants
from sessions.models import Agent, Session
from sessions.runners.scripted_llm import ScriptedLLM
from tests import factories

# Tests hash thousands of passwords and OAuth2 client secrets; PBKDF2's 10^6 rounds made user
# creation the largest cost of many tests. PBKDF2 stays in the list so hashes made elsewhere
# still verify.
FAST_PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
# The per-IP limits count every anonymous request from 127.0.0.1 of the whole run (in Redis, also
# across the daphne subprocesses and for two minutes after): far above what the suite sends.
# The limit tests set their own rates.
GENEROUS_RATES = {"THROTTLE_ANON": "100000/m", "THROTTLE_OAUTH": "100000/m"}


@pytest.fixture(scope="session", autouse=True)
def _test_process_settings() -> Iterator[None]:
    """Settings for this process and, through the environment, for the daphne and worker
    subprocesses the tests start."""
    from django.test import override_settings

    os.environ["PASSWORD_HASHERS"] = ",".join(FAST_PASSWORD_HASHERS)
    os.environ.update(GENEROUS_RATES)
    with override_settings(PASSWORD_HASHERS=FAST_PASSWORD_HASHERS, **GENEROUS_RATES):
        yield


@pytest.fixture
def user(db: Any) -> Any:
    return factories.make_user("alice")


@pytest.fixture
def other_user(db: Any) -> Any:
    return factories.make_user("mallory")


@pytest.fixture
def token(user: Any) -> str:
    return factories.make_token(user)


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def api_client(token: str) -> APIClient:
    """Authenticated as ``user``."""
    return _client(token)


@pytest.fixture
def other_client(other_user: Any) -> APIClient:
    """Authenticated as ``other_user`` (a stranger to ``user``'s objects)."""
    return _client(factories.make_token(other_user))


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def agent(user: Any) -> Agent:
    return factories.make_agent(
        user, slug="shell", name="Shell", spec={"allow_input_command": True}
    )


@pytest.fixture
def session(user: Any, agent: Agent) -> Session:
    return factories.make_session(user, agent, name="first")


def _leftovers() -> list[str]:
    """Sandboxes and servers this test run started that are still alive: our descendants
    (daphne, run_worker, bwrap) and any bubblewrap running as the sandbox uid, wherever it was
    re-parented to."""
    me = os.getpid()
    found = []
    for pid in set(descendants(me)) | set(_sandbox_bwraps()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] != "Z":  # zombies are reaped lazily; they run nothing
            found.append(f"{pid}: {cmdline[:120]}")
    return found


def _sandbox_uid(field: list[str]) -> bool:
    """Is the (real) uid of a ``Uid:`` line one the local backend runs sandboxes as?"""
    if not field:
        return False
    uid = int(field[0])
    base = settings.SANDBOX_UID_BASE
    return uid == settings.SANDBOX_UID or base <= uid < base + settings.SANDBOX_UID_COUNT


def _sandbox_bwraps() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
            if comm == "bwrap" and _sandbox_uid(uid_line.split()[1:2]):
                with contextlib.suppress(OSError):  # only ours: another checkout may be testing
                    if (
                        os.fsencode(str(settings.SANDBOX_DATA_DIR))
                        in (entry / "environ").read_bytes()
                    ):
                        pids.append(int(entry.name))
    return pids


@pytest.fixture
def llm(settings: Any) -> Iterator[ScriptedLLM]:
    """A scripted OpenAI/Anthropic-compatible model server over real HTTP (add turns with
    ``llm.add``). It listens on loopback, which model endpoints may reach only when allowed."""
    settings.LLM_ENDPOINT_ALLOWED_HOSTS = ["127.0.0.1"]
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_running() -> Iterator[None]:
    """After the whole run, no sandbox, server or worker process and no per-run cgroup is left
    (issue: "nothing is left running after the test suite")."""
    yield
    stop_owned()  # what the server does at exit (atexit): its sandboxes stop with it
    deadline = time.monotonic() + 15
    while (left := _leftovers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"processes left running after the tests: {left}"
    support = cgroups.detect()
    mine = f"x-{cgroups.owner_tag(settings.SANDBOX_DATA_DIR)}*"
    if support is not None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            cgroups.remove_pending()
            occupied = [
                c
                for p in support.parents.values()
                for c in p.glob(mine)
                if c.is_dir() and (c / "cgroup.procs").read_text().strip()
            ]
            if not occupied:
                break
            time.sleep(0.2)
        assert occupied == [], f"cgroups with processes left behind: {occupied}"
        for parent in support.parents.values():  # empty ones: a start-up sweep's job; tidy up
            for child in parent.glob(mine):
                with contextlib.suppress(OSError):
                    child.rmdir()


@pytest.fixture(scope="session", autouse=True)
def _test_database_released(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Before pytest-django drops the PostgreSQL test database, end the sessions still open on
    it: the pool threads of the in-process executors keep their connections, and DROP DATABASE
    refused ("being accessed by other users"), leaving the database behind."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )

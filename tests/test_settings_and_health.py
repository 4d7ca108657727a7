"""Settings come from the environment and refuse malformed values at start; /health tells an
operator what runs and whether it works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connection
from django.test import AsyncClient

from tests import factories

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TASK_CONCURRENCY", "four", "TASK_CONCURRENCY='four' is not a valid int"),
        ("TASK_EXECUTOR", "rq", "TASK_EXECUTOR='rq' must be one of ['celery', 'inline', 'worker']"),
        ("DATABASE_URL", "not a url", "DATABASE_URL"),
        ("TASK_LEASE_S", "soon", "TASK_LEASE_S='soon' is not a valid float"),
        ("ASGI_IDLE_THREADS", "-1", "ASGI_IDLE_THREADS=-1 must be 0 or more"),
    ],
)
def test_a_malformed_setting_stops_the_server_with_a_one_line_message(name, value, message):
    result = _manage("check", **{name: value, "SECRET_KEY": "k" * 50})

    assert result.returncode == 2
    assert result.stderr.startswith("configuration error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url", ["mysqlx://bob:hunter2@db/x", "bob:hunter2@db"])
def test_a_bad_database_url_never_echoes_its_password(url):
    result = _manage("check", DATABASE_URL=url, SECRET_KEY="k" * 50)

    assert result.returncode != 0
    assert "hunter2" not in result.stderr + result.stdout


def test_a_database_url_requires_a_secret_key():
    # CI=false: under CI a throwaway key is generated so a clean clone runs without one.
    result = _manage(
        "check", DATABASE_URL="postgres://u@127.0.0.1:5432/db", SECRET_KEY="", CI="false"
    )

    assert result.returncode == 2
    assert "SECRET_KEY" in result.stderr


@pytest.mark.django_db(transaction=True)
async def test_health_reports_every_component():
    await sync_to_async(lambda: factories.make_session(factories.make_user("health-owner")))()

    response = await AsyncClient().get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["mode"] == ("embedded" if django_settings.EMBEDDED else "scale-out")
    assert body["version"] == django_settings.SERVER_VERSION
    assert body["database"]["ok"] is True
    assert body["database"]["vendor"] == connection.vendor
    layer = "RedisPubSubChannelLayer" if django_settings.REDIS_URL else "InMemoryChannelLayer"
    assert body["channel_layer"]["ok"] is True
    assert body["channel_layer"]["backend"].endswith(layer)
    assert body["sandbox"] | {"details": None} == {
        "backend": "local",
        "tier": "bubblewrap",
        "isolated": True,
        "available": True,
        "reason": body["sandbox"]["reason"],
        "details": None,
    }
    assert body["sandbox"]["details"]["seccomp"] is True
    assert body["executor"]["kind"] == django_settings.TASK_EXECUTOR
    assert body["sessions"]["sessions_total"] == 1
    assert body["sessions"]["tasks_queued"] == 0
    assert "SECRET" not in response.content.decode().upper()

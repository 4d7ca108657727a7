"""LOG_FORMAT=json: one JSON object per line, task/session ids inside a run, secrets masked."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog
from asgiref.sync import async_to_sync

from observability.logs import JSONFormatter
from sessions.services import masking
from tests.factories import make_session, make_task, make_user

ROOT = Path(__file__).resolve().parents[2]


def _parse(handler_output: str) -> list[dict[str, Any]]:
    """The JSON lines of ``handler_output`` (other lines, e.g. Python warnings, are skipped)."""
    return [json.loads(line) for line in handler_output.splitlines() if line.startswith("{")]


def _render(callback: Any) -> list[dict[str, Any]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("tests.observability")
    logger.addHandler(handler)
    try:
        callback(logger)
    finally:
        logger.removeHandler(handler)
    return _parse(stream.getvalue())


def test_a_line_is_a_json_object_with_the_bound_ids() -> None:
    def log(logger: logging.Logger) -> None:
        with structlog.contextvars.bound_contextvars(task_id="t-1", session_id="s-1"):
            logger.warning("disk %d%% full", 93)
        logger.warning("outside")

    inside, outside = _render(log)
    assert inside["event"] == "disk 93% full"
    assert inside["level"] == "warning"
    assert inside["logger"] == "tests.observability"
    assert inside["timestamp"].endswith("Z") and "T" in inside["timestamp"]
    assert (inside["task_id"], inside["session_id"]) == ("t-1", "s-1")
    assert "task_id" not in outside


def test_secrets_are_masked_in_message_and_traceback() -> None:
    secret = "hunter2-correct-horse-battery"
    handle = masking.register("obs-test", {"API_TOKEN": secret})
    try:

        def log(logger: logging.Logger) -> None:
            logger.warning("calling with %s", secret)
            try:
                raise ValueError(f"bad token {secret}")
            except ValueError:
                logger.exception("request failed")

        message, failure = _render(log)
    finally:
        masking.unregister(handle)
    assert message["event"] == "calling with [secret:API_TOKEN]"
    assert "ValueError: bad token [secret:API_TOKEN]" in failure["exception"]
    assert secret not in json.dumps([message, failure])


@pytest.mark.django_db(transaction=True)
def test_a_task_run_binds_task_and_session_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner that crashes: sessions.execution logs it, with the task's and session's ids."""
    from sessions import execution
    from sessions.services.tasks import task_claim_next

    owner = make_user()
    session = make_session(owner)
    task = make_task(session)
    (claimed,) = task_claim_next(worker="tests", limit=1, session_id=session.pk)

    def no_runner(kind: str) -> Any:
        raise RuntimeError("no runner today")

    monkeypatch.setattr(execution, "get_runner_class", no_runner)

    def run(logger: logging.Logger) -> None:
        logging.getLogger("sessions.execution").addHandler(logger.handlers[0])
        try:
            async_to_sync(execution.run_claimed_task)(claimed, worker="tests")
        finally:
            logging.getLogger("sessions.execution").removeHandler(logger.handlers[0])

    lines = _render(run)
    crash = next(line for line in lines if line["event"].endswith("crashed"))
    assert crash["task_id"] == str(task.uuid)
    assert crash["session_id"] == str(session.uuid)
    assert "RuntimeError: no runner today" in crash["exception"]
    claimed.refresh_from_db()
    assert claimed.status == "failed"


def test_log_format_json_setting_configures_the_console_handler() -> None:
    code = (
        "import logging, structlog\n"
        "with structlog.contextvars.bound_contextvars(task_id='t-9'):\n"
        "    logging.getLogger('probe').warning('hello from %s', 'probe')\n"
    )
    env = {**os.environ, "LOG_FORMAT": "json", "VAR_DIR": os.environ.get("VAR_DIR", "/tmp/var")}
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    probe = [line for line in _parse(out.stderr) if line.get("logger") == "probe"]
    assert probe == [
        {**probe[0], "event": "hello from probe", "level": "warning", "task_id": "t-9"}
    ]

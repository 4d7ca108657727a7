"""``bin/runtime`` against a live server: agents, sessions, run, files, errors, login."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest

from tests import procs
from tests.cli.conftest import Cli

pytestmark = [pytest.mark.transport, pytest.mark.sandbox]

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def test_agents_list_and_show(cli: Cli) -> None:
    listed = cli("agents", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["SLUG", "NAME", "KIND"]
    slugs = {row.split()[0] for row in rows}
    assert {"shell", "pytest", "demo-llm"} <= slugs

    shown = cli("agents", "show", "shell", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["kind"] == "command"


def test_run_prints_output_live_and_in_order(cli: Cli) -> None:
    proc = cli.popen("run", "shell", "--input", '{"command": "echo hello; sleep 1; echo done"}')
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first:
        rest, err = proc.communicate(timeout=60)
        raise AssertionError(f"exit {proc.returncode}: {err}")
    # "hello" is on the terminal while the command still sleeps: streamed, not printed at the end.
    assert first == "hello\n"
    assert proc.poll() is None
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert first + rest == "hello\ndone\n"
    assert re.search(rf"task {UUID} · session {UUID} · agent shell", err)


def test_run_words_after_double_dash_are_the_command(cli: Cli) -> None:
    result = cli("run", "shell", "--", "printf", "%s\\n", "one", "two words")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "one\ntwo words\n"


def test_failing_command_exits_1_with_its_stderr(cli: Cli) -> None:
    result = cli("run", "shell", "--input", '{"command": "echo partial; echo oops >&2; exit 3"}')
    assert result.returncode == 1
    assert result.stdout == "partial\n"
    assert "oops" in result.stderr
    assert re.search(r"✗ task \w+ failed after [\d.]+s", result.stderr), result.stderr


def test_input_the_agent_refuses_leaves_no_empty_session(cli: Cli, rest: httpx.Client) -> None:
    before = rest.get("/api/v1/sessions").json()["count"]
    refused = cli("run", "shell", "--input", '{"command": 5}')
    assert refused.returncode == 1
    assert "invalid" in refused.stderr.lower()
    assert rest.get("/api/v1/sessions").json()["count"] == before


def test_json_lines_then_tasks_show_and_events(cli: Cli, rest: httpx.Client) -> None:
    result = cli("--json", "run", "shell", "--input", '{"command": "echo a; echo b >&2"}')
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)) and len(seqs) >= 4
    assert all(set(e) >= {"seq", "session_id", "task_id", "type", "ts", "data"} for e in events)
    assert events[-1]["type"] == "task.status" and events[-1]["data"]["status"] == "succeeded"
    task_id = events[-1]["task_id"]
    stdout = "".join(e["data"]["text"] for e in events if e["type"] == "process.stdout")
    assert stdout == "a\n"

    shown = cli("tasks", "show", task_id)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^status\s+succeeded$", shown.stdout, re.M)
    # The stored log read back through `tasks events` is the same as what was streamed.
    replay = cli("tasks", "events", task_id, "--json")
    assert [json.loads(line) for line in replay.stdout.splitlines()] == events
    human = cli("tasks", "events", task_id)
    assert human.stdout == "a\n" and "b" in human.stderr
    followed = cli("tasks", "events", task_id, "--follow", "--after", str(seqs[1]), "--json")
    assert followed.returncode == 0, followed.stderr
    assert [json.loads(line)["seq"] for line in followed.stdout.splitlines()] == seqs[2:]
    # A finished task cannot be cancelled: one clear line, exit 1.
    cancel = cli("tasks", "cancel", task_id)
    assert cancel.returncode == 1
    assert cancel.stderr.startswith("error: ") and "illegal_transition" in cancel.stderr


def test_sessions_lifecycle_and_run_in_a_session(cli: Cli, rest: httpx.Client) -> None:
    created = cli("sessions", "create", "--agent", "shell", "--name", "cli test", "-q")
    assert created.returncode == 0, created.stderr
    session_id = created.stdout.strip()
    assert re.fullmatch(UUID, session_id)
    first = cli("run", "shell", "--session", session_id, "--", "sh", "-c", "echo 1 > f.txt")
    assert first.returncode == 0, first.stderr
    second = cli("run", "shell", "--session", session_id, "--", "cat", "f.txt")
    assert second.stdout == "1\n"  # same session, same workspace
    wrong = cli("run", "demo-llm", "--session", session_id, "--input", "{}")
    assert wrong.returncode == 2 and "runs agent 'shell'" in wrong.stderr

    listed = cli("sessions", "list")
    assert any(line.startswith(session_id) and "cli test" in line
               for line in listed.stdout.splitlines())  # fmt: skip
    shown = cli("sessions", "show", session_id, "--json")
    assert json.loads(shown.stdout)["agent"]["slug"] == "shell"
    tasks = rest.get(f"/api/v1/sessions/{session_id}/tasks").json()
    assert tasks["count"] == 2

    deleted = cli("sessions", "delete", session_id)
    assert deleted.returncode == 0, deleted.stderr
    gone = cli("sessions", "show", session_id)
    assert gone.returncode == 1 and "HTTP 404" in gone.stderr


def test_upload_download_round_trip_byte_for_byte(cli: Cli, tmp_path: Path) -> None:
    session_id = cli("sessions", "create", "--agent", "shell", "-q").stdout.strip()
    payload = bytes(range(256)) * 512 + os.urandom(70_000) + b"\r\n\x00end"
    source = tmp_path / "blob.bin"
    source.write_bytes(payload)

    up = cli("files", "upload", session_id, str(source), "data/in.bin")
    assert up.returncode == 0, up.stderr
    assert "data/in.bin" in up.stderr
    listed = cli("files", "ls", session_id, "data")
    assert re.search(r"^file\s+.*data/in\.bin$", listed.stdout, re.M), listed.stdout
    # The sandbox sees the same bytes.
    digest = cli("run", "shell", "--session", session_id, "--", "sha256sum", "data/in.bin")
    import hashlib

    assert digest.stdout.split()[0] == hashlib.sha256(payload).hexdigest()

    down = cli("files", "download", session_id, "data/in.bin", str(tmp_path / "out.bin"))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "out.bin").read_bytes() == payload
    to_dir = cli("files", "download", session_id, "data/in.bin", str(tmp_path))
    assert to_dir.returncode == 0 and (tmp_path / "in.bin").read_bytes() == payload

    missing = cli("files", "download", session_id, "nope.bin", str(tmp_path / "nope.bin"))
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr
    assert not (tmp_path / "nope.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    directory = cli("files", "download", session_id, "data")
    assert directory.returncode == 1 and "is a directory" in directory.stderr


def test_chat_streams_the_answer_and_summarises_tool_calls(cli: Cli) -> None:
    session_id = cli("sessions", "create", "--agent", "demo-llm", "-q").stdout.strip()
    result = cli("chat", session_id, "$ echo from-the-sandbox")
    assert result.returncode == 0, result.stderr
    assert "(scripted demo) Calling shell." in result.stdout
    assert "from-the-sandbox" in result.stdout.split("Calling shell.", 1)[1]
    assert re.search(r"→ shell\(\{\"command\": \"echo from-the-sandbox\"\}\)", result.stderr)
    assert "← shell:" in result.stderr


def test_errors_are_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    bad = cli("agents", "list", RUNTIME_API_KEY="nope.nope")
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")
    assert "HTTP 401" in bad.stderr and "Traceback" not in bad.stderr

    nokey = cli("agents", "list", RUNTIME_API_KEY="")
    assert nokey.returncode == 1 and "runtime login" in nokey.stderr

    refused = cli("agents", "list", RUNTIME_URL=f"http://127.0.0.1:{procs.free_port()}")
    assert refused.returncode == 1
    assert "connection refused" in refused.stderr and "Traceback" not in refused.stderr

    usage = cli("run", "shell", "--input", "{not json")
    assert usage.returncode == 2 and "--input is not valid JSON" in usage.stderr
    unknown = cli("frobnicate")
    assert unknown.returncode == 2


def test_login_saves_the_config_file(cli: Cli) -> None:
    bad = cli("login", "--url", cli.url, "--key", "nope.nope", RUNTIME_URL="", RUNTIME_API_KEY="")
    assert bad.returncode == 1
    config = cli.home / ".config" / "agent-runtime" / "config.toml"
    assert not config.exists()

    ok = cli("login", "--url", cli.url, "--key", cli.key, RUNTIME_URL="", RUNTIME_API_KEY="")
    assert ok.returncode == 0, ok.stderr
    assert config.stat().st_mode & 0o777 == 0o600
    # No flags, no environment: the saved URL and key are used.
    listed = cli("agents", "list", RUNTIME_URL="", RUNTIME_API_KEY="")
    assert listed.returncode == 0, listed.stderr
    assert "shell" in listed.stdout

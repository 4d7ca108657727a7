"""Escape attempts from a real bubblewrap sandbox that the other sandbox tests do not cover:
the server's processes, environment and own files stay out of reach."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.conf import settings

from sandboxes.backends.local import LocalBackend
from tests.sandboxes.helpers import run

pytestmark = pytest.mark.sandbox

SECRET_NAME = "AGENT_RUNTIME_ESCAPE_TEST_SECRET"


async def test_server_processes_are_invisible_and_cannot_be_signalled(
    backend: LocalBackend, workspace: Path
) -> None:
    server = os.getpid()
    script = f"""
    import json, os
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    try:
        os.kill({server}, 0)
        signal = "delivered"
    except ProcessLookupError:
        signal = "no such process"
    except PermissionError:
        signal = "permission denied"
    print(json.dumps({{"pids": pids, "signal": signal, "me": os.getpid()}}))
    """
    out, err, exit_event = await run(backend, workspace, script)
    assert exit_event.exit_code == 0, err
    seen = json.loads(out)
    # Its own pid namespace: bwrap's init (1) and the command; the host has hundreds.
    assert len(seen["pids"]) <= 3, seen
    assert seen["me"] <= 3
    assert seen["signal"] != "delivered"
    assert len([p for p in os.listdir("/proc") if p.isdigit()]) > 10  # control: the host's view


async def test_server_environment_and_files_are_out_of_reach(
    backend: LocalBackend, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_NAME, "s3cr3t-value")
    project = Path(settings.BASE_DIR)
    targets = [
        project / "runtime_project" / "settings.py",
        Path(settings.VAR_DIR) / "secret_key",
        Path(f"/proc/{os.getpid()}/environ"),
    ]
    script = f"""
    import os
    print("ENV", "s3cr3t-value" in repr(dict(os.environ)))
    for p in {[str(t) for t in targets]!r} + ["/proc/1/environ"]:
        try:
            data = open(p, "rb").read()
            print("READ", p, b"s3cr3t-value" in data)
        except OSError as e:
            print("denied", p, e.errno)
    """
    out, err, exit_event = await run(backend, workspace, script)
    assert exit_event.exit_code == 0, err
    assert "ENV False" in out
    for target in targets:
        assert f"denied {target}" in out, out
    # The sandbox's own init may be readable; it never holds the server's environment.
    assert "READ /proc/1/environ True" not in out
    assert targets[0].exists()  # control: the host has the file the sandbox cannot open

"""Helpers for the sandbox tests: run a command in a real sandbox and collect what it did."""

from __future__ import annotations

import textwrap
from pathlib import Path

from sandboxes.backends.local import LocalBackend
from sandboxes.base import ExecEvent, Execution, Limits, SandboxSpec


def spec_for(workspace: Path, **limits: float) -> SandboxSpec:
    return SandboxSpec(sandbox_id="t", workspace=workspace, limits=Limits(**limits))  # type: ignore[arg-type]


async def collect(execution: Execution) -> tuple[bytes, bytes, ExecEvent]:
    out, err = b"", b""
    async for event in execution:
        if event.stream == "stdout":
            out += event.data
        elif event.stream == "stderr":
            err += event.data
        else:
            return out, err, event
    raise AssertionError("no exit event")


async def run(
    backend: LocalBackend, workspace: Path, script: str, **kwargs: object
) -> tuple[str, str, ExecEvent]:
    ex = await backend.exec(
        spec_for(workspace), ["python3", "-c", textwrap.dedent(script)], **kwargs
    )  # type: ignore[arg-type]
    out, err, exit_event = await collect(ex)
    return out.decode(), err.decode(), exit_event

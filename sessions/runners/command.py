"""The ``command`` agent kind: a shell command or script in the session's sandbox.

A task runs, in order of precedence:

1. ``input.argv`` (a list) or ``input.command`` (a shell string run with ``bash -c``), when the
   agent spec allows it (``allow_input_command``, default true);
2. ``spec.templates[task_type]``: a shell script run as ``bash -c <script> <task_type> <args…>``
   so ``input.args`` arrive as ``"$@"`` and are never spliced into the script text;
3. ``spec.command`` (argv list or shell string).

Like the CLI-agent wrapper in DESIGN §5, the task's ``instructions`` are written to
``/workspace/.agent/instructions.md`` and the whole input to ``.agent/task.json`` before the
command starts; the command sees ``AGENT_TASK_TYPE``, ``AGENT_TASK_ID``, ``AGENT_SESSION_ID``,
``AGENT_INSTRUCTIONS_FILE`` in its environment. Output streams as ``process.stdout`` /
``process.stderr`` events while it is produced; ``process.exit`` carries the exit code; a non-zero
exit fails the task with ``command_failed``. When ``spec.result.junit_xml`` names a JUnit XML
report in the workspace, its counts become ``result.tests``. ``spec.secrets`` names team or
session secrets given to the command as environment variables or files
(``sessions.runners.secrets``); their values are masked in the output events.

``spec.architecture`` (``opencode``, ``codex``, ``claude-code``, ``aider``; default
``generic``) runs a coding-agent CLI instead, unless the task gives its own command: the CLI
and its prompt come from ``sessions.runners.architectures`` and its stdout becomes message,
tool, file and usage events through its transcript converter (``command_output.py``). Every
run ends with ``file.changed`` for the files it changed (``file_changes.py``). With
``spec.stdout_format: "events"`` a plain command's JSON-object stdout lines become ``custom``
events (its own progress reports, ``command_output.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from django.conf import settings

from runtime_project.db import db_call
from runtime_project.exceptions import InvalidInput
from sandboxes import paths
from sandboxes.registry import get_backend
from sandboxes.services import sandbox_spec
from sessions.runners import file_changes
from sessions.runners.architectures import ARCHITECTURE_NAMES, ARCHITECTURES
from sessions.runners.architectures import run as architecture_run
from sessions.runners.architectures.schemas import (
    ARCHITECTURE_OPTIONS_SCHEMA,
    CLI_MODEL_SCHEMA,
    CONFIGURATION_SCHEMA,
)
from sessions.runners.base import Runner, TaskContext, TaskResult, validate_schema
from sessions.runners.command_output import STDOUT_FORMATS, CommandOutput
from sessions.runners.junit import junit_summary
from sessions.runners.secrets import SECRETS_SPEC_SCHEMA

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_COMMAND = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
    ]
}


# Limits a task's config may tighten (never loosen): they apply per command. memory_mb and pids
# bound the whole session sandbox (its cgroup), so only the agent spec sets them.
_TASK_LIMITS = {
    "cpu_s": {"type": "integer", "minimum": 1},
    "file_size_mb": {"type": "integer", "minimum": 1},
    "output_bytes": {"type": "integer", "minimum": 1024},
    "workspace_mb": {"type": "integer", "minimum": 1},
}
# What the debugger may change before the command runs (edit-and-continue).
ARGV_EDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"argv": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["argv"],
}
WORKSPACE_CHECK_S = 2.0  # how often a running command's workspace size is measured
MAX_FILE_EVENTS = 500  # file.changed events (and result.changed_files entries) per run

# ExecEvent.limit -> the task's error code and message.
LIMIT_ERRORS = {
    "memory": ("memory_limit", "The command was killed for using more memory than its limit."),
    "cpu": ("cpu_limit", "The command used more CPU time than its limit."),
    "file_size": ("file_size_limit", "The command tried to write a file larger than its limit."),
}


# The spec keys that shape a session's sandbox, shared by the kinds that run in one.
SANDBOX_SPEC_PROPERTIES: dict[str, Any] = {
    "network": {"enum": ["none", "host"]},
    "image": {
        "description": "Container image of the sandbox (docker backend; needs python3).",
        "type": "string",
        "minLength": 1,
        "maxLength": 300,
    },
    "allow_hosts": {
        "description": "With network none: hosts reachable through the sandbox's HTTP "
        "proxy (host, host:port, *.domain[:port], ip[:port]).",
        "type": "array",
        "maxItems": 100,
        "items": {
            "type": "string",
            "pattern": r"^((\*\.)?[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:[0-9]{1,5})?$",
        },
    },
}


class CommandRunner(Runner):
    kind = "command"
    spec_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "command": _COMMAND,
            "templates": {
                "type": "object",
                "additionalProperties": {"type": "string", "minLength": 1},
            },
            "allow_input_command": {"type": "boolean"},
            "env": _STRING_MAP,
            **SANDBOX_SPEC_PROPERTIES,
            "retry_safe": {"type": "boolean"},
            "secrets": SECRETS_SPEC_SCHEMA,
            "limits": {
                "type": "object",
                "properties": {
                    "memory_mb": {"type": "integer", "minimum": 16},
                    "cpu_s": {"type": "integer", "minimum": 1},
                    "pids": {"type": "integer", "minimum": 8},
                    "file_size_mb": {"type": "integer", "minimum": 1},
                    "tmp_mb": {"type": "integer", "minimum": 1},
                    "output_bytes": {"type": "integer", "minimum": 1024},
                    "workspace_mb": {"type": "integer", "minimum": 1},
                },
                "additionalProperties": False,
            },
            "result": {
                "type": "object",
                "properties": {"junit_xml": {"type": "string", "minLength": 1}},
                "additionalProperties": False,
            },
            "architecture": {"enum": list(ARCHITECTURE_NAMES)},
            "stdout_format": {"enum": list(STDOUT_FORMATS)},
            "model": CLI_MODEL_SCHEMA,
            "test_command": {"type": "string", "minLength": 1, "maxLength": 2000},
            "architecture_options": ARCHITECTURE_OPTIONS_SCHEMA,
        },
        # A coding-agent CLI needs a model to talk to.
        "if": {
            "properties": {"architecture": {"not": {"const": "generic"}}},
            "required": ["architecture"],
        },
        "then": {"required": ["model"]},
        "additionalProperties": False,
    }
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "minLength": 1},
            "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "args": {"type": "array", "items": {"type": "string"}},
            "instructions": {"type": "string"},
            "cwd": {"type": "string"},
            "env": _STRING_MAP,
            "stdin": {"type": "string"},
            "configuration": CONFIGURATION_SCHEMA,
        },
        "not": {"required": ["command", "argv"]},
    }

    @classmethod
    def capabilities(cls, spec: dict[str, Any]) -> dict[str, bool]:
        return {**super().capabilities(spec), "can_execute_code": True}

    @classmethod
    def validate_spec(cls, spec: dict[str, Any]) -> None:
        """The schema, then: the architecture speaks the model's provider dialect."""
        super().validate_spec(spec)
        name = spec.get("architecture", "generic")
        if name != "generic":
            provider = spec["model"].get("provider", "openai")
            supported = ARCHITECTURES[name].providers
            if provider not in supported:
                raise InvalidInput(
                    f"The {name} architecture talks to {' or '.join(supported)} models, "
                    f"not {provider}.",
                    code="invalid_spec",
                    details={"spec.model.provider": provider, "supported": list(supported)},
                )

    @classmethod
    def validate_input(cls, data: dict[str, Any], schema: dict[str, Any] | None = None) -> None:
        """The schema, then ``configuration``'s paths stay in the workspace (InvalidInput)."""
        super().validate_input(data, schema)
        if isinstance(data.get("configuration"), dict):
            architecture_run.configuration_of(data, {})

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """``config.limits`` may tighten the agent's per-command limits (see ``_TASK_LIMITS``)."""
        if "limits" in config:
            schema = {"type": "object", "properties": _TASK_LIMITS, "additionalProperties": False}
            validate_schema(config["limits"], schema, "config.limits")

    async def run(self, ctx: TaskContext) -> TaskResult:
        spec = _with_task_limits(ctx.spec, ctx.config.get("limits") or {})
        cwd = paths.normalize(ctx.input.get("cwd", ""))
        has_toolchain = await asyncio.to_thread(self._prepare_workspace, ctx)
        # A coding-agent CLI, unless the task gives its own command (e.g. `pytest` in between).
        plain = "argv" in ctx.input or "command" in ctx.input
        cli = None if plain else await architecture_run.prepare(ctx, spec, cwd)
        argv = cli.launch.argv if cli is not None else self.argv_for(ctx)
        stdin = cli.launch.stdin if cli is not None else ctx.input.get("stdin")
        spec = cli.spec if cli is not None else spec

        env = {
            **spec.get("env", {}),
            **ctx.input.get("env", {}),
            **ctx.secret_env,
            **(cli.launch.env if cli is not None else {}),
            "AGENT_TASK_TYPE": ctx.task_type,
            "AGENT_TASK_ID": ctx.task_uuid,
            "AGENT_SESSION_ID": ctx.session_uuid,
            "AGENT_INSTRUCTIONS_FILE": "/workspace/.agent/instructions.md",
            "AGENT_NETWORK": spec.get("network", settings.SANDBOX_NETWORK),
        }
        if has_toolchain:
            env["AGENT_TOOLCHAIN"] = str(settings.TOOLCHAIN_DIR)
            env["PYTHONPATH"] = str(settings.TOOLCHAIN_DIR)
        limits = spec.get("limits", {})
        sandbox = await db_call(sandbox_spec)(session=ctx.session, agent_spec=spec)
        max_output = int(limits.get("output_bytes", 64 * 1024 * 1024))

        process_id = uuid.uuid4().hex[:12]
        edited = await ctx.checkpoint(
            kind="command", name=argv[0], step_id=f"process-{process_id}",
            input={"argv": argv}, input_schema=ARGV_EDIT_SCHEMA,
        )  # fmt: skip
        argv = list(edited["argv"])
        backend = get_backend()
        await ctx.ensure_sandbox(sandbox)
        before = await asyncio.to_thread(file_changes.snapshot, ctx.workspace)
        started = time.monotonic()
        execution = await backend.exec(
            sandbox, argv, cwd=cwd, env=env, stdin=stdin.encode() if stdin is not None else None
        )
        ctx.emit(
            "process.started",
            {"process_id": process_id, "argv": _redact_argv(argv), "cwd": cwd or "."},
        )
        ctx.set_phase("executing")

        async def stop_on_request() -> None:
            await ctx.cancel_requested.wait()
            await execution.terminate(grace_s=ctx.cancel_grace_s)

        watcher = asyncio.ensure_future(stop_on_request())
        workspace_limit = int(limits.get("workspace_mb", 0)) * 1024 * 1024
        workspace_limit = workspace_limit or settings.WORKSPACE_MAX_BYTES
        over: list[int] = []  # the size that broke the limit, once seen

        async def watch_workspace() -> None:
            while True:
                await asyncio.sleep(WORKSPACE_CHECK_S)
                size = await asyncio.to_thread(paths.workspace_size, ctx.workspace)
                if size > workspace_limit:
                    over.append(size)
                    await execution.terminate(grace_s=1.0)
                    return

        size_watcher = asyncio.ensure_future(watch_workspace())
        output = CommandOutput(ctx, process_id, max_output, cli, spec.get("stdout_format", "text"))
        exit_event = None
        stopper: asyncio.Future[None] | None = None
        try:
            async for event in execution:
                if event.stream == "exit":
                    exit_event = event
                    break
                if output.write(event.stream, event.data):
                    # Stop the producer: a runaway loop would otherwise burn CPU until the
                    # timeout with nobody reading its output.
                    stopper = asyncio.ensure_future(execution.terminate(grace_s=1.0))
        finally:
            watcher.cancel()
            size_watcher.cancel()
            if stopper is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(stopper)
            if exit_event is None:
                # Cancelled hard (or the stream broke): never leave the process tree behind.
                with contextlib.suppress(Exception):
                    await asyncio.shield(execution.terminate(grace_s=0))
        duration_ms = int((time.monotonic() - started) * 1000)
        output.close()
        assert exit_event is not None
        code = exit_event.exit_code
        output.finish(code)
        ctx.emit(
            "process.exit",
            {
                "process_id": process_id,
                "exit_code": code,
                "timed_out": exit_event.timed_out,
                "killed": exit_event.killed,
                "limit": exit_event.limit,
                "duration_ms": duration_ms,
            },
        )
        emitted, dropped = output.emitted, output.dropped
        result: dict[str, Any] = {
            "exit_code": code,
            "duration_ms": duration_ms,
            "output_bytes": emitted + dropped,
        }
        if cli is not None:
            await architecture_run.finish_result(ctx, cli, result, output.stderr)
        await self._report_changes(ctx, before, result, cli)
        junit = spec.get("result", {}).get("junit_xml")
        if junit:
            summary = junit_summary(ctx.workspace, junit)
            if summary is not None:
                result["tests"] = summary
                ctx.emit("log", {"level": "info", "message": "test summary", "tests": summary})
        if not over:
            size = await asyncio.to_thread(paths.workspace_size, ctx.workspace)
            if size > workspace_limit:
                over.append(size)
        if over:
            return TaskResult(
                status="failed",
                result=result,
                error={
                    "code": "workspace_limit",
                    "message": f"The workspace grew past its limit of {workspace_limit} bytes.",
                    "details": {
                        "limit": "workspace", "limit_bytes": workspace_limit,
                        "size_bytes": over[0], "exit_code": code,
                    },
                },
            )  # fmt: skip
        if dropped:
            result["output_truncated"] = True
            return TaskResult(
                status="failed",
                result=result,
                error={
                    "code": "output_limit",
                    "message": f"The command wrote more than {max_output} bytes of output.",
                    "details": {"limit": "output", "limit_bytes": max_output, "exit_code": code},
                },
            )
        if cli is not None and cli.converter.failed and exit_event.limit is None:
            failed = cli.converter.failed
            # The CLI's words: a provider's 401 may quote the key it was given.
            return TaskResult(
                status="failed", result=result,
                error={"code": failed["code"], "message": ctx.mask(failed["message"]),
                       "details": {"exit_code": code, "architecture": cli.architecture.name}},
            )  # fmt: skip
        if code == 0:
            return TaskResult(status="succeeded", result=result)
        if exit_event.limit is not None:
            code_name, message = LIMIT_ERRORS[exit_event.limit]
            details = {"exit_code": code, "limit": exit_event.limit}
            if exit_event.limit == "memory":
                details["memory_mb"] = sandbox.limits.memory_mb
            elif exit_event.limit == "cpu":
                details["cpu_s"] = sandbox.limits.cpu_s
            else:
                details["file_size_mb"] = sandbox.limits.file_size_mb
            return TaskResult(
                status="failed",
                result=result,
                error={"code": code_name, "message": message, "details": details},
            )
        return TaskResult(
            status="failed",
            result=result,
            error={
                "code": "command_failed",
                "message": f"The command exited with code {code}.",
                "details": {"exit_code": code},
            },
        )

    @staticmethod
    async def _report_changes(
        ctx: TaskContext, before: file_changes.Snapshot, result: dict[str, Any],
        cli: architecture_run.ArchitectureRun | None,
    ) -> None:  # fmt: skip
        """``file.changed`` for each file the run changed that its transcript did not report
        (at most :data:`MAX_FILE_EVENTS`), and ``result.changed_files``/``artifacts``."""
        after = await asyncio.to_thread(file_changes.snapshot, ctx.workspace)
        reported = set(cli.converter.changed_files) if cli is not None else set()
        changes = file_changes.diff(before, after)
        for path, change in [c for c in changes if c[0] not in reported][:MAX_FILE_EVENTS]:
            ctx.emit("file.changed", {"path": path, "change": change})
        changed = list(dict.fromkeys([*reported, *(p for p, _ in changes)]))
        if changed:
            result["changed_files"] = changed[:MAX_FILE_EVENTS]
        artifacts = [p for p in after.entries if p.startswith("artifacts/")]
        if artifacts:
            result["artifacts"] = sorted(artifacts)[:MAX_FILE_EVENTS]

    def argv_for(self, ctx: TaskContext) -> list[str]:
        """Choose the argv (see the module docstring). Raises InvalidInput if there is none."""
        spec, data = ctx.spec, ctx.input
        args = list(data.get("args", []))
        if "argv" in data or "command" in data:
            if not spec.get("allow_input_command", True):
                raise InvalidInput(
                    "This agent does not accept a command in the task input.",
                    code="command_not_allowed",
                )
            if "argv" in data:
                return [*data["argv"], *args]
            return ["bash", "-c", data["command"], ctx.task_type, *args]
        template = spec.get("templates", {}).get(ctx.task_type)
        if template:
            return ["bash", "-c", template, ctx.task_type, *args]
        command = spec.get("command")
        if isinstance(command, str):
            return ["bash", "-c", command, ctx.task_type, *args]
        if isinstance(command, list):
            return [*command, *args]
        raise InvalidInput(
            f"Nothing to run: give input.command or input.argv, or define a "
            f"{ctx.task_type!r} template in the agent spec.",
            code="no_command",
        )

    def _prepare_workspace(self, ctx: TaskContext) -> bool:
        """Create the workspace, write the task files; return whether the toolchain exists."""
        ctx.workspace.mkdir(parents=True, exist_ok=True)
        with paths.open_write(ctx.workspace, ".agent/task.json") as fh:
            fh.write(
                json.dumps(
                    {"task_id": ctx.task_uuid, "task_type": ctx.task_type, "input": ctx.input},
                    indent=2,
                ).encode()
            )
        with paths.open_write(ctx.workspace, ".agent/instructions.md") as fh:
            fh.write(str(ctx.input.get("instructions", "")).encode())
        return Path(settings.TOOLCHAIN_DIR).is_dir()


def _with_task_limits(spec: dict[str, Any], task_limits: dict[str, Any]) -> dict[str, Any]:
    """The agent spec with the task's ``config.limits`` applied: each the smaller value."""
    if not task_limits:
        return spec
    limits = dict(spec.get("limits") or {})
    defaults = {
        "cpu_s": settings.SANDBOX_CPU_S, "file_size_mb": 1024, "output_bytes": 64 * 1024 * 1024,
        "workspace_mb": settings.WORKSPACE_MAX_BYTES // (1024 * 1024),
    }  # fmt: skip
    for key, value in task_limits.items():
        limits[key] = min(int(value), int(limits.get(key, defaults[key])))
    return {**spec, "limits": limits}


def _redact_argv(argv: list[str]) -> list[str]:
    # Long inline scripts make events unreadable; keep the head of each argument.
    return [a if len(a) <= 500 else a[:500] + "…" for a in argv]

"""What every agent kind implements (DESIGN §5): ``async run(ctx) -> TaskResult``.

The runner owns *what* runs; the executor (``sessions.execution``) owns claiming, leases,
timeouts, cancellation and the final status, so a runner never touches the task row directly.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import jsonschema

from runtime_project.exceptions import InvalidInput
from sessions.services.events import EventBuffer

if TYPE_CHECKING:
    from sandboxes.base import SandboxSpec


@dataclass
class TaskResult:
    """Outcome of a run. ``status`` is ``succeeded`` or ``failed`` (the executor decides
    ``cancelled``/``timed_out``), or ``waiting`` with ``pending`` (what the task waits for,
    see ``sessions.services.waiting``); ``error`` is ``{"code", "message", "details"}`` on
    failure."""

    status: str
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    pending: dict[str, Any] | None = None


@dataclass
class TaskContext:
    """Everything a runner may use for one task.

    Attributes:
        task_uuid, session_uuid: public ids.
        task_type: ``run``/``complete``/``plan``/``generate``/``fix``/…
        input, config: the task's JSON input and config.
        spec: the agent spec of the pinned version.
        workspace: host path of the session workspace (mounted at /workspace in the sandbox).
        events: the buffered event writer (``ctx.emit`` is a shortcut).
        cancel_requested: set when the task should stop; runners stop cooperatively.
        cancel_grace_s: seconds a runner gets to stop before it is cancelled hard.
        session: the ``Session`` model instance (its agent loaded).
        task: the ``Task`` row (for services that start child tasks); ``worker`` its lease owner.
        resume: the client's answer when a waiting task was resumed (``task_resume``), else None.
        debug: the run's ``debugger.control.DebugControl`` (None outside an executor); runners
            call :meth:`checkpoint` before each step.
        secret_env: ``{name: value}`` of the secrets the agent spec asks for as environment
            variables (plus ``AGENT_SECRETS_DIR`` when it asks for files); runners add it to
            the environment of every sandboxed process (``sessions.runners.secrets``).
    """

    task_uuid: str
    session_uuid: str
    task_type: str
    input: dict[str, Any]
    config: dict[str, Any]
    spec: dict[str, Any]
    workspace: Path
    events: EventBuffer
    cancel_requested: asyncio.Event
    cancel_grace_s: float
    phase: str = "running"
    session: Any = None  # the Session row (agent loaded), for services that need it
    task: Any = None
    worker: str = ""
    resume: dict[str, Any] | None = None
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    debug: Any = None

    @property
    def debugging(self) -> bool:
        """Whether this is a debug run (breakpoints honoured, full step inputs recorded)."""
        return self.debug is not None and self.debug.enabled

    async def checkpoint(
        self, *, kind: str, name: str, step_id: str, input: Any,
        input_schema: dict[str, Any] | None = None, editable: bool = True,
    ) -> Any:  # fmt: skip
        """Call before the step ``step_id`` (a debugger step kind: ``component``, ``llm``,
        ``tool``, ``cell``, ``command``) runs with ``input``; returns the input to run it with,
        which the debugger may have edited (checked against ``input_schema``). May pause the
        run (``debugger.control``). Raises ``asyncio.CancelledError`` (``DebugAborted``)
        when the run must not go on."""
        if self.debug is None:
            return input
        return await self.debug.checkpoint(
            kind=kind, name=name, step_id=step_id, input=input,
            input_schema=input_schema, editable=editable,
        )  # fmt: skip

    def mask(self, data: Any) -> Any:
        """``data`` (a string or JSON) with the run's secret values masked, for text that
        leaves the run other than through ``emit`` (e.g. a tool result sent to a model)."""
        return self.events.mask(data)

    def emit(self, type: str, data: dict[str, Any]) -> None:
        """Append an event to the task's stream (buffered, ordered)."""
        self.events.emit(type, data)

    def set_phase(self, phase: str) -> None:
        """Report progress as ``task.status`` with ``status: running`` and the new ``phase``."""
        self.phase = phase
        self.emit("task.status", {"status": "running", "phase": phase})

    async def ensure_sandbox(self, spec: SandboxSpec) -> bool:
        """Start the session's sandbox (``spec``) unless it runs; returns whether it started.
        Only a start moves the task to the ``starting_sandbox`` phase, queued with its
        ``sandbox.starting`` event so that both are written in one batch. Raises what
        ``sandboxes.services.sandbox_ensure`` raises."""
        from sandboxes.services import sandbox_ensure

        def emit(type: str, data: dict[str, Any]) -> None:
            if type == "sandbox.starting":
                self.set_phase("starting_sandbox")
            self.emit(type, data)

        return await sandbox_ensure(session=self.session, spec=spec, emit=emit)


class Runner(abc.ABC):
    """Base of an agent kind. ``spec_schema`` (JSON Schema) validates ``Agent.spec``;
    ``input_schema`` validates a task's ``input`` unless the agent declares its own."""

    kind: ClassVar[str]
    spec_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    input_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    @classmethod
    def validate_spec(cls, spec: dict[str, Any]) -> None:
        """Raises InvalidInput (400) listing the schema violations."""
        validate_schema(spec, cls.spec_schema, "spec")

    @classmethod
    def capabilities(cls, spec: dict[str, Any]) -> dict[str, bool]:
        """What an agent of this kind with ``spec`` can do, as shown on the agent:
        ``can_execute_code`` (runs code in a sandbox or kernel), ``can_execute_sql`` (has a SQL
        cell runner), ``can_execute_ai`` (calls a model)."""
        return {"can_execute_code": False, "can_execute_sql": False, "can_execute_ai": False}

    @classmethod
    def validate_input(cls, data: dict[str, Any], schema: dict[str, Any] | None = None) -> None:
        """Raises InvalidInput (400) listing the schema violations."""
        validate_schema(data, schema or cls.input_schema, "input")

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """Check the kind-specific keys of a task's ``config`` (raises InvalidInput, 400)."""
        return None  # kinds without config keys of their own accept any

    @abc.abstractmethod
    async def run(self, ctx: TaskContext) -> TaskResult:
        """Do the work, streaming events through ``ctx``; honour ``ctx.cancel_requested``."""


def validate_schema(data: Any, schema: dict[str, Any], field_name: str) -> None:
    """Raise InvalidInput (400) listing where ``data`` breaks ``schema`` (at most 20 places,
    under ``details.fields[field_name]``)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise InvalidInput(
            f"The {field_name} does not match its schema.",
            details={
                "fields": {
                    field_name: [
                        {"path": "/".join(str(p) for p in e.absolute_path), "message": e.message}
                        for e in errors[:20]
                    ]
                }
            },
        )


def validate_json_schema(schema: dict[str, Any], field_name: str = "input_schema") -> None:
    """Check that ``schema`` is itself a valid JSON Schema (raises InvalidInput)."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidInput(
            f"The {field_name} is not a valid JSON Schema.",
            details={"fields": {field_name: [exc.message]}},
        ) from None

"""The runtime protocol's vocabulary (docs/remote-runtimes.md): frame parsing, close codes and
the channel-layer addresses the consumer and the ``remote`` runner talk through.

Pure functions and constants, no database: the consumer (``runtimes.consumers``) and the runner
(``sessions.runners.remote``) both import it, and the tests read the same names.

Channel-layer traffic (every message is a dict with a ``type``; ``channel`` is the sending
consumer's channel name, so a runner can ignore a connection it no longer trusts):

- runner → one consumer (``Runtime.channel_name``): ``runtime.assign`` ``{task, resumed}``,
  ``runtime.cancel`` ``{task_id}``;
- runner → every consumer of the session (:func:`runtimes_group`): ``runtime.revoke``
  ``{task_id, reason}`` when a task ended without the runtime's final frame;
- consumer → consumer: ``runtime.displace`` ``{by}`` (a newer runtime took the session);
- consumer → the runners of the session (:func:`runners_group`): ``remote.attached``
  ``{channel, runtime_id, kinds, capabilities, resume}``, ``remote.detached``
  ``{channel, runtime_id}``;
- consumer → one task's runner (:func:`task_group`): ``remote.events`` ``{channel, task_id,
  events}``, ``remote.complete`` ``{channel, task_id, result, usage}``, ``remote.fail``
  ``{channel, task_id, error}``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime_project.exceptions import InvalidInput

PROTOCOL = "agent-runtime.runtime.v1"

CLOSE_BAD_FRAME = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_DISPLACED = 4409
CLOSE_THROTTLED = 4429

RUNTIME_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
# ``log``, ``process.stdout``, ``output.display``…: lower-case dotted words.
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
EVENT_TYPE_MAX = 64
RESERVED_PREFIXES = ("task.", "runtime.")  # the server's own: a runtime may not forge them
MAX_EVENTS_PER_FRAME = 1000
MAX_RESUME = 100
MAX_KINDS = 20
MAX_NAME = 64
ERROR_MESSAGE_MAX = 2000


def runners_group(session_uuid: Any) -> str:
    """Group of the runners with a task on the session (they hear attach/detach)."""
    return f"remote-session.{session_uuid}"


def runtimes_group(session_uuid: Any) -> str:
    """Group of the consumers whose runtime is attached to the session (they hear revokes)."""
    return f"remote-runtimes.{session_uuid}"


def task_group(task_uuid: Any) -> str:
    """Group of the runner of one task (it hears the task's events and final frame)."""
    return f"remote-task.{task_uuid}"


@dataclass
class Registration:
    """A valid ``runtime.register`` frame."""

    runtime_id: str
    session_id: str
    kinds: list[str]
    capabilities: dict[str, Any]
    resume: list[str] = field(default_factory=list)


def _fail(field_errors: dict[str, list[str]], what: str) -> InvalidInput:
    return InvalidInput(f"The {what} frame is not valid.", details={"fields": field_errors})


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return None


def parse_register(frame: Mapping[str, Any]) -> Registration:
    """Check a ``runtime.register`` frame.

    Raises:
        InvalidInput: ``details.fields`` names each bad field.
    """
    errors: dict[str, list[str]] = {}
    runtime_id = frame.get("runtime_id")
    if not isinstance(runtime_id, str) or not RUNTIME_ID.match(runtime_id):
        errors["runtime_id"] = ["1-100 characters of [A-Za-z0-9._:-]"]
    session_id = _uuid(frame.get("session_id"))
    if session_id is None:
        errors["session_id"] = ["a session id (UUID)"]
    kinds = frame.get("kinds", [])
    if (
        not isinstance(kinds, list)
        or len(kinds) > MAX_KINDS
        or not all(isinstance(k, str) and 0 < len(k) <= MAX_NAME for k in kinds)
    ):
        errors["kinds"] = [f"a list of at most {MAX_KINDS} names"]
    capabilities = frame.get("capabilities", {})
    if not isinstance(capabilities, dict) or len(capabilities) > 100:
        errors["capabilities"] = ["an object (at most 100 keys)"]
    resume = frame.get("resume", [])
    resumed = [_uuid(t) for t in resume] if isinstance(resume, list) else [None]
    if len(resumed) > MAX_RESUME or None in resumed:
        errors["resume"] = [f"a list of at most {MAX_RESUME} task ids"]
    if errors:
        raise _fail(errors, "runtime.register")
    return Registration(
        runtime_id=str(runtime_id),
        session_id=str(session_id),
        kinds=list(dict.fromkeys(kinds)),
        capabilities=dict(capabilities),
        resume=[t for t in dict.fromkeys(resumed) if t is not None],
    )


def parse_task_id(frame: Mapping[str, Any]) -> str:
    """The ``task_id`` of a task frame. Raises InvalidInput when it is not a UUID."""
    task_id = _uuid(frame.get("task_id"))
    if task_id is None:
        raise _fail({"task_id": ["a task id (UUID)"]}, str(frame.get("type")))
    return task_id


def parse_events(frame: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events of a ``task.event`` (``event``) or ``task.events`` (``events``) frame, as
    ``[{"type", "data"}]``.

    Raises:
        InvalidInput: not a list of 1-1000 ``{"type", "data": {...}}`` objects, or a type that
            is malformed or reserved (``task.*``, ``runtime.*``: the server's own).
    """
    raw = [frame.get("event")] if frame.get("type") == "task.event" else frame.get("events")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_EVENTS_PER_FRAME:
        raise _fail({"events": [f"1 to {MAX_EVENTS_PER_FRAME} events"]}, str(frame.get("type")))
    events = []
    for i, event in enumerate(raw):
        where = f"events[{i}]" if frame.get("type") == "task.events" else "event"
        if not isinstance(event, dict):
            raise _fail({where: ['an object {"type", "data"}']}, str(frame.get("type")))
        kind, data = event.get("type"), event.get("data", {})
        if not isinstance(kind, str) or len(kind) > EVENT_TYPE_MAX or not EVENT_TYPE.match(kind):
            raise _fail({f"{where}.type": ["lower-case dotted words"]}, str(frame.get("type")))
        if kind.startswith(RESERVED_PREFIXES):
            raise InvalidInput(
                f"Event type {kind!r} is reserved to the server.",
                code="reserved_event_type",
                details={"type": kind, "reserved_prefixes": list(RESERVED_PREFIXES)},
            )
        if not isinstance(data, dict):
            raise _fail({f"{where}.data": ["an object"]}, str(frame.get("type")))
        events.append({"type": kind, "data": data})
    return events


def parse_complete(frame: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``(result, usage)`` of a ``task.complete`` frame. Raises InvalidInput."""
    result, usage = frame.get("result"), frame.get("usage", {})
    errors = {}
    if result is not None and not isinstance(result, dict):
        errors["result"] = ["an object or null"]
    if not isinstance(usage, dict):
        errors["usage"] = ["an object"]
    if errors:
        raise _fail(errors, "task.complete")
    return result, usage or {}


def parse_fail(frame: Mapping[str, Any]) -> dict[str, Any]:
    """The ``{"code", "message", "details"}`` of a ``task.fail`` frame (code defaults to
    ``runtime_error``, the message is cut at 2000 characters). Raises InvalidInput."""
    error = frame.get("error", {})
    if not isinstance(error, dict):
        raise _fail({"error": ['an object {"code", "message", "details"}']}, "task.fail")
    code = error.get("code") or "runtime_error"
    message = error.get("message") or "The runtime reported a failure."
    details = error.get("details") or {}
    if not isinstance(code, str) or len(code) > MAX_NAME or not isinstance(message, str):
        raise _fail({"error": ["code: a name (<= 64 chars), message: a string"]}, "task.fail")
    if not isinstance(details, dict):
        raise _fail({"error.details": ["an object"]}, "task.fail")
    return {"code": code, "message": message[:ERROR_MESSAGE_MAX], "details": details}


def compatible(
    *, kinds: list[str], capabilities: Mapping[str, Any], kind: str, required: list[str]
) -> bool:
    """Whether a runtime declaring ``kinds``/``capabilities`` can run a task of runtime kind
    ``kind`` that needs each capability in ``required`` (a truthy value)."""
    return kind in kinds and all(capabilities.get(name) for name in required)

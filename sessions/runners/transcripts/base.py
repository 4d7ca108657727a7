"""The converter interface and the helpers every architecture shares.

A coding-agent CLI (OpenCode, Codex CLI, Aider; ``docs/dev/coding-agent-clis.md``) runs as a
``command`` agent; its stdout, line by line, becomes our events (DESIGN §3) through a
:class:`TranscriptConverter`: stateful per run, but free of I/O, clocks and randomness, so the
same lines always give the same events (ids come from the transcript or from counters).

Event shapes (``Emit(type, data)``), the same the other runners emit:

- ``message.delta`` ``{"message_id", "text"}`` then ``message.completed`` ``{"message_id",
  "role": "assistant", "text"}``: these CLIs print finished parts, so the whole text is one
  delta (``sessions.runners.llm.runner``: deltas coalesce per ``message_id``).
- ``tool.call`` ``{"call_id", "name", "arguments"}`` and ``tool.result`` ``{"call_id", "name",
  "output", "is_error"}``, plus ``"exit_code"`` (int or None) for shell commands and
  ``"truncated": True`` when the output was cut to :data:`MAX_OUTPUT_CHARS`.
- ``file.changed`` ``{"path", "change": "created"|"modified"|"deleted"}``, plus ``"diff"``
  (unified), ``"additions"``, ``"deletions"`` when the CLI reports them; ``path`` is relative to
  the workspace when the CLI gave an absolute path under it (``runtime_client.notebook`` emits
  the same ``{"path", "change"}``).
- ``usage`` ``{"step", "prompt_tokens", "completion_tokens", "cached_tokens",
  "reasoning_tokens"}`` (+ ``"cache_write_tokens"``/``"cost_usd"`` when non-zero): the keys the
  llm runner, its budgets and the debugger already sum (``prompt_tokens`` = the CLI's input
  tokens, ``completion_tokens`` = its output tokens); ``step`` is the CLI's step or turn.
- ``error`` ``{"code", "message", "details"}`` (``code``: ``provider_error`` for a model API
  error, ``agent_error`` for another error the CLI reported, ``command_failed`` for a non-zero
  exit without one); ``failed`` holds ``{"code", "message"}`` of the one that fails the run.
- ``log`` ``{"level": "info"|"warning", "message", "source"}``, plus ``"truncated": True`` and
  extra fields (e.g. ``"kind": "reasoning"``): unknown or unparseable lines, never dropped.

Nothing here adds a field the CLI did not print; the CLIs never print the API key they were
given (the runner should still mask its output with ``ctx.mask`` like any command output).
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any, ClassVar

MAX_OUTPUT_CHARS = 64_000  # tool outputs and diffs (the console shows them folded)
MAX_LOG_CHARS = 2_000  # one log line

PHASES = ("planning", "reading", "editing", "testing", "answering")

_TEST_COMMAND = re.compile(
    r"\b(pytest|py\.test|tox|nox|jest|vitest|mocha|rspec|phpunit|ctest|unittest)\b"
    r"|\b(npm|pnpm|yarn|bun)\s+(run\s+)?test\b|\bgo\s+test\b|\bcargo\s+(test|nextest)\b"
    r"|\bmake\s+(test|check)\b|\bdotnet\s+test\b|\bmix\s+test\b|\bdeno\s+test\b"
    r"|\b(mvn|gradlew?)\b.*\btest\b"
)
_EDIT_COMMAND = re.compile(
    r"\bsed\s+-i|\bapply_patch\b|\bgit\s+apply\b|\bpatch\s+-|\btee\b|\btouch\b|\bmkdir\b"
    r"|\brm\s|\bmv\s|\bcp\s|(?<![<>&0-9])>{1,2}(?!\s*/dev/)\s*[\w./]"
)
_READ_COMMAND = re.compile(
    r"(^|[\s;&|'\"(])(cat|head|tail|less|more|grep|rg|ag|find|fd|ls|tree|wc|nl|stat|file"
    r"|sed\s+-n|awk|git\s+(diff|log|show|status|grep))\b"
)
_PLAN_TOOLS = {"todowrite", "todoread", "todo_list", "update_plan", "plan"}
_READ_TOOLS = {"read", "grep", "glob", "list", "ls", "view_image", "webfetch", "web_search"}
_EDIT_TOOLS = {"edit", "write", "patch", "apply_patch", "multiedit", "file_change"}


@dataclass(frozen=True)
class Emit:
    """One event to append: ``ctx.emit(emit.type, emit.data)``."""

    type: str
    data: dict[str, Any]


def command_phase(command: str) -> str | None:
    """The phase a shell command puts the run in: ``testing`` (a test runner), ``editing``
    (sed -i, redirections, mv…), ``reading`` (cat, grep, ls…), else None (phase unchanged)."""
    if _TEST_COMMAND.search(command):
        return "testing"
    if _EDIT_COMMAND.search(command):
        return "editing"
    if _READ_COMMAND.search(command):
        return "reading"
    return None


def tool_phase(name: str) -> str | None:
    """The phase a (non-shell) tool puts the run in, or None."""
    name = name.lower()
    if name in _PLAN_TOOLS:
        return "planning"
    if name in _READ_TOOLS:
        return "reading"
    if name in _EDIT_TOOLS:
        return "editing"
    return None


def clip(text: str, limit: int = MAX_OUTPUT_CHARS) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters (the head and the tail, the tail being where test
    summaries are) and whether it was cut."""
    if len(text) <= limit:
        return text, False
    head = limit // 4
    tail = limit - head - 40
    return f"{text[:head]}\n[… {len(text) - head - tail} characters cut …]\n{text[-tail:]}", True


class TranscriptConverter:
    """One CLI run's stdout → events. Call :meth:`feed` per stdout line (without the newline)
    and :meth:`finish` once with the exit code; both return the events to append, in order.

    ``workspace`` is the run's working directory as the CLI sees it (absolute paths under it
    become workspace-relative); ``id_prefix`` prefixes the ids this converter makes up (give the
    task id: message ids must not repeat across a session's tasks).

    After any call: ``phase`` (one of :data:`PHASES` or None), ``failed`` (``{"code",
    "message"}`` when the run failed, whatever the exit code), ``changed_files``
    (workspace-relative, in first-change order, no repeats)."""

    architecture: ClassVar[str] = "generic"
    # True: the CLI's stdout is no transcript; the runner streams it as process.stdout.
    passthrough: ClassVar[bool] = False

    def __init__(self, workspace: str = "/workspace", *, id_prefix: str = "") -> None:
        self.workspace = posixpath.normpath(workspace) if workspace else "/workspace"
        self.id_prefix = id_prefix
        self.phase: str | None = None
        self.failed: dict[str, Any] | None = None
        self.changed_files: list[str] = []
        self._counter = 0
        self._finished = False

    # -- the interface ---------------------------------------------------------------------

    def feed(self, line: str) -> list[Emit]:
        """The events for one stdout line."""
        raise NotImplementedError

    def finish(self, exit_code: int) -> list[Emit]:
        """Flush what is pending and decide failure: a failure the transcript showed stands;
        otherwise a non-zero exit fails the run with ``command_failed``."""
        if self._finished:
            return []
        self._finished = True
        emits = self.flush()
        if self.failed is None and exit_code != 0:
            message = f"The {self.architecture} CLI exited with code {exit_code}."
            emits.append(self.error("command_failed", message, {"exit_code": exit_code}))
        return emits

    def flush(self) -> list[Emit]:
        """Subclasses: the events of items still open at the end of the run."""
        return []

    # -- helpers for subclasses ------------------------------------------------------------

    def new_id(self, kind: str) -> str:
        self._counter += 1
        return f"{self.id_prefix}{self.architecture}-{kind}-{self._counter}"

    def relative(self, path: str) -> str:
        """``path`` relative to the workspace when it is an absolute path under it."""
        if not path.startswith("/"):
            return posixpath.normpath(path)
        normal = posixpath.normpath(path)
        if normal == self.workspace:
            return "."
        root = self.workspace.rstrip("/") + "/"
        return normal[len(root) :] if normal.startswith(root) else normal

    def set_phase(self, phase: str | None) -> None:
        if phase is not None:
            self.phase = phase

    def log(self, message: str, level: str = "info", **extra: Any) -> Emit:
        text, cut = clip(message, MAX_LOG_CHARS)
        data: dict[str, Any] = {"level": level, "message": text, "source": self.architecture}
        if cut:
            data["truncated"] = True
        return Emit("log", {**data, **extra})

    def message(self, text: str, message_id: str) -> list[Emit]:
        """An assistant text: one delta and the completed message."""
        self.set_phase("answering")
        return [
            Emit("message.delta", {"message_id": message_id, "text": text}),
            Emit(
                "message.completed", {"message_id": message_id, "role": "assistant", "text": text}
            ),
        ]

    def tool_call(self, call_id: str, name: str, arguments: Any, *, command: str = "") -> Emit:
        self.set_phase(command_phase(command) if command else tool_phase(name))
        return Emit("tool.call", {"call_id": call_id, "name": name, "arguments": arguments})

    def tool_result(
        self, call_id: str, name: str, output: str, is_error: bool, **extra: Any
    ) -> Emit:
        text, cut = clip(output or "")
        data: dict[str, Any] = {"call_id": call_id, "name": name, "output": text,
                                "is_error": is_error, **extra}  # fmt: skip
        if cut:
            data["truncated"] = True
        return Emit("tool.result", data)

    def file_changed(self, path: str, change: str = "modified", **extra: Any) -> Emit:
        relative = self.relative(path)
        if relative not in self.changed_files:
            self.changed_files.append(relative)
        self.set_phase("editing")
        data: dict[str, Any] = {"path": relative, "change": change}
        for key, value in extra.items():
            if value is None:
                continue
            if key == "diff" and isinstance(value, str):
                value, cut = clip(value)
                if cut:
                    data["truncated"] = True
            data[key] = value
        return Emit("file.changed", data)

    def usage(self, step: int, prompt: Any, completion: Any, cached: Any = 0,
              reasoning: Any = 0, **extra: Any) -> Emit:  # fmt: skip
        data: dict[str, Any] = {"step": step, "prompt_tokens": as_int(prompt),
                                "completion_tokens": as_int(completion),
                                "cached_tokens": as_int(cached),
                                "reasoning_tokens": as_int(reasoning)}  # fmt: skip
        for key, value in extra.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and value:
                data[key] = value
        return Emit("usage", data)

    def error(self, code: str, message: str, details: dict[str, Any] | None = None,
              *, fatal: bool = True) -> Emit:  # fmt: skip
        message, _ = clip(message or code, MAX_LOG_CHARS)
        if fatal and self.failed is None:
            self.failed = {"code": code, "message": message}
        return Emit("error", {"code": code, "message": message, "details": details or {}})


class JsonLinesConverter(TranscriptConverter):
    """A converter of a CLI that prints one JSON object per line: blank lines are skipped,
    anything that is not a JSON object becomes a ``log`` event, objects go to
    :meth:`on_event`."""

    def feed(self, line: str) -> list[Emit]:
        if not line.strip():
            return []
        try:
            event = json.loads(line)
        except ValueError:
            return [self.log(line)]
        if not isinstance(event, dict):
            return [self.log(line)]
        return self.on_event(event, line)

    def on_event(self, event: dict[str, Any], line: str) -> list[Emit]:
        """The events for one parsed line (``line`` is the raw text, for a ``log``)."""
        raise NotImplementedError


def obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (transcripts are untrusted)."""
    return value if isinstance(value, dict) else {}


def as_int(value: Any) -> int:
    """A token count as an int (None, strings and garbage count 0)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value)
    return 0


class GenericConverter(TranscriptConverter):
    """A plain command (``generic``): its output is no transcript. The runner keeps streaming
    it as ``process.stdout`` (``passthrough``); ``feed`` returns nothing and ``finish`` only
    decides failure from the exit code (``failed``, no event: the task's status says it)."""

    architecture = "generic"
    passthrough = True

    def feed(self, line: str) -> list[Emit]:
        return []

    def finish(self, exit_code: int) -> list[Emit]:
        if exit_code != 0 and self.failed is None:
            message = f"The command exited with code {exit_code}."
            self.failed = {"code": "command_failed", "message": message}
        self._finished = True
        return []

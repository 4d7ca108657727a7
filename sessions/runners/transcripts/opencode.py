"""OpenCode (``opencode-ai`` 1.18.33): ``opencode run --format json`` → events.

Source: ``docs/dev/coding-agent-clis.md`` and the recordings in
``tests/fixtures/transcripts/opencode/``. stdout is JSON lines ``{"type", "timestamp",
"sessionID", "part"|"error"}`` of finished parts (no text deltas):

- ``step_start`` → nothing (a second one before a ``step_finish`` is a retried model call: a
  ``log`` warning);
- ``text`` (``part.id``, ``part.text``) → ``message.delta`` + ``message.completed`` with
  ``message_id`` = the part id;
- ``reasoning`` (``part.text``) → ``log`` ``{"kind": "reasoning"}``;
- ``tool_use`` (``part.tool``, ``part.id``, ``state{status, input, output, error, metadata}``)
  → ``tool.call`` ``{"call_id": part.id, "name": tool, "arguments": input}`` (the CLI's
  ``callID`` repeats across steps, the part id does not) then, once ``status`` is
  ``completed``/``error``, ``tool.result`` (``exit_code`` = ``metadata.exit`` for ``bash``;
  ``is_error`` for ``error`` and for the ``invalid`` tool, an unknown tool the model called);
  a completed ``edit``/``write`` also gives ``file.changed`` with ``metadata.diff`` and the
  ``filediff`` additions/deletions;
- ``step_finish`` (``part.tokens{input, output, reasoning, cache{read, write}}``, ``part.cost``)
  → ``usage`` with ``step`` counting the step_finish lines;
- ``error`` (``error{name, data{message, statusCode, isRetryable}}``) → ``error``
  (``provider_error`` for ``APIError``, else ``agent_error``) and ``failed``;
- anything else (other types, non-JSON, garbled JSON) → ``log``.
"""

from __future__ import annotations

import json
from typing import Any

from sessions.runners.transcripts.base import Emit, JsonLinesConverter, as_int, obj


class OpenCodeConverter(JsonLinesConverter):
    architecture = "opencode"

    def __init__(self, workspace: str = "/workspace", *, id_prefix: str = "") -> None:
        super().__init__(workspace, id_prefix=id_prefix)
        self._steps = 0
        self._open_step = False
        self._attempts = 0
        self._open_calls: dict[str, str] = {}  # call_id → tool name, announced, no result yet

    def on_event(self, event: dict[str, Any], line: str) -> list[Emit]:
        kind = event.get("type")
        part = obj(event.get("part"))
        if kind == "step_start":
            return self._step_start()
        if kind == "step_finish":
            return self._step_finish(part)
        if kind == "text" and isinstance(part.get("text"), str):
            return self.message(part["text"], str(part.get("id") or self.new_id("message")))
        if kind == "reasoning" and isinstance(part.get("text"), str):
            return [self.log(part["text"], kind="reasoning")]
        if kind == "tool_use" and isinstance(part.get("state"), dict):
            return self._tool_use(part)
        if kind == "error":
            return [self._error(event.get("error"))]
        return [self.log(line)]

    def flush(self) -> list[Emit]:
        emits = [
            self.tool_result(call_id, name, "The tool call did not finish.", True)
            for call_id, name in self._open_calls.items()
        ]
        self._open_calls.clear()
        return emits

    # -- line types ------------------------------------------------------------------------

    def _step_start(self) -> list[Emit]:
        if not self._open_step:
            self._open_step, self._attempts = True, 1
            return []
        self._attempts += 1
        return [self.log(f"The model call was retried (attempt {self._attempts}).", "warning")]

    def _step_finish(self, part: dict[str, Any]) -> list[Emit]:
        self._open_step = False
        self._steps += 1
        tokens = obj(part.get("tokens"))
        cache = obj(tokens.get("cache"))
        cost = part.get("cost")
        return [self.usage(
            self._steps, tokens.get("input"), tokens.get("output"), cache.get("read"),
            tokens.get("reasoning"), cache_write_tokens=as_int(cache.get("write")),
            cost_usd=cost if isinstance(cost, int | float) and not isinstance(cost, bool) else 0,
        )]  # fmt: skip

    def _tool_use(self, part: dict[str, Any]) -> list[Emit]:
        state: dict[str, Any] = part["state"]
        name = str(part.get("tool") or "tool")
        call_id = str(part.get("id") or part.get("callID") or self.new_id("call"))
        arguments = obj(state.get("input"))
        emits: list[Emit] = []
        if call_id not in self._open_calls:
            command = str(arguments.get("command") or "") if name == "bash" else ""
            emits.append(self.tool_call(call_id, name, arguments, command=command))
            self._open_calls[call_id] = name
        status = state.get("status")
        if status not in ("completed", "error"):
            return emits  # pending/running: the result comes with a later line
        del self._open_calls[call_id]
        metadata = obj(state.get("metadata"))
        extra: dict[str, Any] = {}
        if name == "bash":
            exit_code = metadata.get("exit")
            extra["exit_code"] = exit_code if isinstance(exit_code, int) else None
        if status == "error":
            output, is_error = str(state.get("error") or "The tool call failed."), True
        else:
            output, is_error = str(state.get("output") or ""), name == "invalid"
        emits.append(self.tool_result(call_id, name, output, is_error, **extra))
        if status == "completed" and name in ("edit", "write"):
            emits.extend(self._file_change(name, arguments, metadata))
        return emits

    def _file_change(
        self, name: str, arguments: dict[str, Any], metadata: dict[str, Any]
    ) -> list[Emit]:
        filediff = obj(metadata.get("filediff"))
        path = arguments.get("filePath") or filediff.get("file")
        if not isinstance(path, str) or not path:
            return []
        change = "modified"
        if name == "write" and metadata.get("exists") is False:
            change = "created"
        diff = metadata.get("diff") if isinstance(metadata.get("diff"), str) else None
        if diff is None and isinstance(filediff.get("patch"), str):
            diff = filediff["patch"]
        counts = {k: filediff[k] for k in ("additions", "deletions") if isinstance(
            filediff.get(k), int)}  # fmt: skip
        return [self.file_changed(path, change, diff=diff, **counts)]

    def _error(self, error: Any) -> Emit:
        error = obj(error)
        name = str(error.get("name") or "Error")
        data = obj(error.get("data"))
        message = str(data["message"]) if isinstance(data.get("message"), str) else name
        try:  # UnknownError wraps the provider's JSON error in the message
            inner = json.loads(message)
            if isinstance(inner, dict) and isinstance(inner.get("message"), str):
                message = inner["message"]
        except ValueError:
            pass
        details: dict[str, Any] = {"name": name}
        if isinstance(data.get("statusCode"), int):
            details["status"] = data["statusCode"]
        if isinstance(data.get("isRetryable"), bool):
            details["retryable"] = data["isRetryable"]
        code = "provider_error" if name == "APIError" else "agent_error"
        return self.error(code, message, details)

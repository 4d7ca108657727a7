"""Codex CLI (``@openai/codex`` 0.171.0): ``codex exec --json`` → events.

Source: ``docs/dev/coding-agent-clis.md`` and the recordings in
``tests/fixtures/transcripts/codex/``. stdout is JSON lines with a ``type``:

- ``thread.started`` (``thread_id``), ``turn.started`` → nothing (the thread id scopes ids);
- ``item.completed`` ``agent_message`` (``text``, whole) → ``message.delta`` +
  ``message.completed``;
- ``command_execution`` (``command``, ``aggregated_output``, ``exit_code``, ``status``):
  ``item.started`` → ``tool.call`` ``{"name": "exec_command", "arguments": {"command"}}``,
  ``item.completed`` → ``tool.result`` with ``exit_code`` (``is_error`` when it failed or
  exited non-zero);
- ``file_change`` (``changes[{path, kind: add|update|delete}]``, no diff) → ``tool.call``
  ``apply_patch`` / ``tool.result`` and, when completed, one ``file.changed`` per path;
- ``mcp_tool_call`` / ``web_search`` → ``tool.call`` / ``tool.result``; ``reasoning`` →
  ``log`` ``{"kind": "reasoning"}``; ``todo_list`` → ``log`` ``{"kind": "plan", "items"}``
  (phase ``planning``); an ``error`` item is a warning (not fatal) → ``log`` level warning;
- ``turn.completed`` (``usage{input_tokens, cached_input_tokens, output_tokens,
  reasoning_output_tokens}``) → ``usage`` with ``step`` = the turn number;
- ``error`` (``message``) → ``error`` ``provider_error`` and ``failed``, except the retry
  notices ``Reconnecting... n/N (…)`` (→ ``log`` warning, ``kind: retry``); the ``turn.failed``
  that follows with the same message adds nothing (a different one is a second ``error``); a
  later ``turn.completed`` clears ``failed`` (the error was not fatal after all);
- anything else (other types, non-JSON, garbled JSON) → ``log``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sessions.runners.transcripts.base import Emit, JsonLinesConverter, obj

_STATUS = re.compile(r"\bstatus (\d{3})\b")
_CHANGE = {"add": "created", "update": "modified", "delete": "deleted"}


class CodexConverter(JsonLinesConverter):
    architecture = "codex"

    def __init__(self, workspace: str = "/workspace", *, id_prefix: str = "") -> None:
        super().__init__(workspace, id_prefix=id_prefix)
        self._thread = ""
        self._turns = 0
        self._open_items: dict[str, str] = {}  # item id → tool name, announced, no result yet
        self._last_error = ""

    def on_event(self, event: dict[str, Any], line: str) -> list[Emit]:
        kind = event.get("type")
        item = event.get("item")
        if kind == "thread.started":
            self._thread = str(event.get("thread_id") or "")
            return []
        if kind == "turn.started":
            return []
        if kind in ("item.started", "item.updated", "item.completed") and isinstance(item, dict):
            return self._item(item, done=kind == "item.completed", raw=line)
        if kind == "turn.completed":
            return self._turn_completed(event.get("usage"))
        if kind == "error":
            return self._error(event.get("message"))
        if kind == "turn.failed":
            error = obj(event.get("error"))
            return self._error(error.get("message"), repeat=False)
        return [self.log(line)]

    def flush(self) -> list[Emit]:
        emits = [
            self.tool_result(self._id(item_id), name, "The item did not finish.", True)
            for item_id, name in self._open_items.items()
        ]
        self._open_items.clear()
        return emits

    # -- helpers ---------------------------------------------------------------------------

    def _id(self, item_id: str) -> str:
        """Item ids (``item_0``…) restart per run: scoped by the thread (and the prefix)."""
        thread = self._thread[-12:] if self._thread else "thread"
        return f"{self.id_prefix}codex-{thread}-{item_id}"

    def _item(self, item: dict[str, Any], *, done: bool, raw: str) -> list[Emit]:
        kind = item.get("type")
        item_id = str(item.get("id") or self.new_id("item"))
        if kind == "agent_message":
            return self.message(str(item.get("text") or ""), self._id(item_id)) if done else []
        if kind == "reasoning":
            return [self.log(str(item.get("text") or ""), kind="reasoning")] if done else []
        if kind == "error":
            return [self.log(str(item.get("message") or raw), "warning")] if done else []
        if kind == "todo_list":
            self.set_phase("planning")
            items = item.get("items") if isinstance(item.get("items"), list) else []
            return [self.log("plan", kind="plan", items=items)] if done else []
        tool = self._tool(kind, item)
        if tool is None:
            return [self.log(raw)]
        name, arguments, command = tool
        emits: list[Emit] = []
        if item_id not in self._open_items:
            emits.append(self.tool_call(self._id(item_id), name, arguments, command=command))
            self._open_items[item_id] = name
        if done:
            del self._open_items[item_id]
            emits.extend(self._result(kind, item, self._id(item_id), name))
        return emits

    def _tool(self, kind: Any, item: dict[str, Any]) -> tuple[str, Any, str] | None:
        """(tool name, arguments, shell command) of a tool-like item, None for others."""
        if kind == "command_execution":
            command = str(item.get("command") or "")
            return "exec_command", {"command": command}, command
        if kind == "file_change":
            changes = item.get("changes") if isinstance(item.get("changes"), list) else []
            return "apply_patch", {"changes": changes}, ""
        if kind == "mcp_tool_call":
            name = f"{item.get('server') or 'mcp'}.{item.get('tool') or 'tool'}"
            return name, item.get("arguments"), ""
        if kind == "web_search":
            return "web_search", {"query": item.get("query")}, ""
        return None

    def _result(self, kind: Any, item: dict[str, Any], call_id: str, name: str) -> list[Emit]:
        failed = item.get("status") == "failed"
        if kind == "command_execution":
            exit_code = item.get("exit_code") if isinstance(item.get("exit_code"), int) else None
            output = str(item.get("aggregated_output") or "")
            is_error = failed or exit_code not in (0, None)
            return [self.tool_result(call_id, name, output, is_error, exit_code=exit_code)]
        if kind == "file_change":
            changes = [c for c in item.get("changes") or [] if isinstance(c, dict)]
            lines = [f"{c.get('kind', 'update')} {self.relative(str(c.get('path')))}"
                     for c in changes]  # fmt: skip
            emits = [self.tool_result(call_id, name, "\n".join(lines), failed)]
            if not failed:
                emits.extend(
                    self.file_changed(str(c["path"]), _CHANGE.get(str(c.get("kind")), "modified"))
                    for c in changes if isinstance(c.get("path"), str)
                )  # fmt: skip
            return emits
        if kind == "mcp_tool_call":
            error = item.get("error")
            result = item.get("result")
            output = json.dumps(error if error else result, default=str) if (
                error or result) else ""  # fmt: skip
            return [self.tool_result(call_id, name, output, failed or bool(error))]
        return [self.tool_result(call_id, name, "", failed)]

    def _turn_completed(self, usage: Any) -> list[Emit]:
        self._turns += 1
        self.failed = None  # the turn went on after an error: it was not fatal
        self._last_error = ""
        usage = usage if isinstance(usage, dict) else {}
        return [self.usage(
            self._turns, usage.get("input_tokens"), usage.get("output_tokens"),
            usage.get("cached_input_tokens"), usage.get("reasoning_output_tokens"),
            cache_write_tokens=usage.get("cache_write_input_tokens") or 0,
        )]  # fmt: skip

    def _error(self, message: Any, *, repeat: bool = True) -> list[Emit]:
        text = message if isinstance(message, str) and message else "The Codex turn failed."
        if text.startswith("Reconnecting..."):
            # "Reconnecting... 1/2 (<reason>)": a retry notice (request_max_retries), not the
            # failure; the error line after the last retry is.
            return [self.log(text, level="warning", kind="retry")]
        if not repeat and text == self._last_error:
            return []  # turn.failed after the error line that said it
        self._last_error = text
        details: dict[str, Any] = {}
        if status := _STATUS.search(text):
            details["status"] = int(status.group(1))
        return [self.error("provider_error", text, details)]

"""Claude Code (``@anthropic-ai/claude-code`` 2.1.332): ``claude -p --output-format stream-json
--verbose`` → events.

Source: ``docs/dev/coding-agent-clis.md`` and the recordings in
``tests/fixtures/transcripts/claude-code/``. stdout is JSON lines with a ``type``:

- ``system``: ``init`` (``claude_code_version``, ``model``, ``permissionMode``, ``tools``) →
  ``log`` ``{"kind": "init"}``; ``status`` (``requesting``) → nothing; ``api_retry``
  (``attempt``, ``max_retries``, ``retry_delay_ms``, ``error_status``, ``error``) → ``log``
  warning ``{"kind": "retry"}``; ``permission_denied`` (``tool_name``, ``message``) → ``log``
  warning; other subtypes (``informational`` with its ``level``…) → ``log``;
- ``assistant`` (``uuid``, ``message{id, content[], usage}``): one line per content block, so
  an API reply spans several lines with the same ``message.id``. ``text`` → ``message.delta``
  + ``message.completed`` (``message_id`` = the line's ``uuid``); ``thinking`` → ``log``
  ``{"kind": "reasoning"}``; ``tool_use`` (``id``, ``name``, ``input``) → ``tool.call``. The
  first line of each reply gives ``usage`` (``input_tokens``, ``cache_read_input_tokens``,
  ``cache_creation_input_tokens``, and the ``output_tokens`` of ``message_start``, i.e. about
  1: the CLI does not update it). A line with ``is_api_error_message`` (model
  ``<synthetic>``; ``error``, ``api_error_status``; its text is the CLI's error message) →
  ``error`` ``provider_error`` and ``failed``, no message;
- ``user``: ``tool_result`` blocks (``tool_use_id``, ``content`` str or text blocks,
  ``is_error``) → ``tool.result``; ``Bash`` gets ``exit_code`` (0 when not an error, N from
  the ``Exit code N`` the CLI writes first on failure, else None); a successful
  ``Edit``/``MultiEdit``/``Write``/``NotebookEdit`` → ``file.changed`` from the line's
  ``tool_use_result`` (``type: create|update``, ``filePath``, ``structuredPatch`` hunks → a
  unified ``diff`` with ``additions``/``deletions``). Text blocks the CLI added itself
  (``isSynthetic``, e.g. "Your response above was cut off") → ``log``;
- ``stream_event`` (only with ``--include-partial-messages``; ``event`` is the Anthropic SSE
  event): ``text_delta`` → ``message.delta`` (the following ``assistant`` line then gives only
  ``message.completed``, same id); ``message_start`` + ``message_delta`` → the reply's
  ``usage`` with the real output tokens (the ``assistant`` lines then give none); other
  events → nothing;
- ``result`` (``is_error``, ``subtype`` ``success``|``error_max_turns``|…, ``result``,
  ``errors``, ``api_error_status``, ``usage`` = the run's totals, ``total_cost_usd``): the
  difference between its totals and the ``usage`` events so far (the output tokens the
  ``assistant`` lines under-report) and the cost → one more ``usage`` for the last step;
  ``is_error`` without an earlier ``error`` → ``error`` (``provider_error`` when
  ``terminal_reason`` is ``api_error``, else ``agent_error``); ``is_error: false`` clears
  ``failed`` (the run recovered);
- anything else (other types, non-JSON, garbled JSON) → ``log``.
"""

from __future__ import annotations

import re
from typing import Any

from sessions.runners.transcripts.base import (
    Emit,
    JsonLinesConverter,
    as_int,
    obj,
)

_EXIT = re.compile(r"^Exit code (-?\d+)")
_FILE_TOOLS = {"Edit", "MultiEdit", "Write", "NotebookEdit"}
# Claude Code's tool names base.tool_phase does not know (Read, Edit, Write, MultiEdit, Glob,
# Grep, LS, WebFetch, TodoWrite it does).
_PHASES = {"exitplanmode": "planning", "enterplanmode": "planning", "taskcreate": "planning",
           "taskupdate": "planning", "notebookread": "reading", "notebookedit": "editing",
           "websearch": "reading"}  # fmt: skip
_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens",
               "cache_creation_input_tokens")  # fmt: skip


class ClaudeCodeConverter(JsonLinesConverter):
    architecture = "claude-code"

    def __init__(self, workspace: str = "/workspace", *, id_prefix: str = "") -> None:
        super().__init__(workspace, id_prefix=id_prefix)
        self._steps = 0
        self._reply_id: str | None = None  # message.id of the reply being printed
        self._reply_open = False  # no user/result line since its last assistant line
        self._streamed_usage = False  # stream_event lines carry the usage
        self._start_usage: dict[str, Any] = {}  # message_start's, until message_delta
        self._stream_text: tuple[str, str] | None = None  # (message id, text so far)
        self._calls: dict[str, tuple[str, str, dict[str, Any]]] = {}  # tool_use id → call
        self._used_ids: set[str] = set()
        self._summed = dict.fromkeys(_USAGE_KEYS, 0)
        self._api_error = False

    def on_event(self, event: dict[str, Any], line: str) -> list[Emit]:
        kind = event.get("type")
        message = obj(event.get("message"))
        if kind == "system":
            return self._system(event, line)
        if kind == "assistant" and isinstance(message.get("content"), list):
            return self._assistant(event, message)
        if kind == "user" and "content" in message:
            return self._user(event, message)
        if kind == "stream_event" and isinstance(event.get("event"), dict):
            return self._stream(event["event"])
        if kind == "result":
            return self._result(event)
        return [self.log(line)]

    def flush(self) -> list[Emit]:
        emits: list[Emit] = []
        if self._stream_text is not None:  # killed mid-reply: the deltas sent get their end
            message_id, text = self._stream_text
            self._stream_text = None
            emits.append(self._completed(message_id, text))
        emits += [
            self.tool_result(call_id, name, "The tool call did not finish.", True)
            for call_id, name, _ in self._calls.values()
        ]
        self._calls.clear()
        return emits

    # -- line types ------------------------------------------------------------------------

    def _system(self, event: dict[str, Any], line: str) -> list[Emit]:
        subtype = event.get("subtype")
        if subtype == "status":
            return []
        if subtype == "init":
            tools = event["tools"] if isinstance(event.get("tools"), list) else []
            text = (f"Claude Code {event.get('claude_code_version', '?')}: model "
                    f"{event.get('model', '?')}, permission mode "
                    f"{event.get('permissionMode', '?')}, {len(tools)} tools")  # fmt: skip
            return [self.log(text, kind="init")]
        if subtype == "api_retry":
            status = event.get("error_status")
            text = (f"The model call was retried (attempt {event.get('attempt')} of "
                    f"{event.get('max_retries')}, after {event.get('error') or 'an error'}"
                    f"{f' (HTTP {status})' if isinstance(status, int) else ''}).")  # fmt: skip
            return [self.log(text, "warning", kind="retry")]
        if subtype == "permission_denied":
            text = f"{event.get('tool_name') or 'A tool'} was denied: {event.get('message')}"
            return [self.log(text, "warning", kind="permission_denied")]
        if subtype == "informational" and isinstance(event.get("content"), str):
            level = "warning" if event.get("level") == "warning" else "info"
            return [self.log(event["content"], level)]
        return [self.log(line)]

    def _assistant(self, event: dict[str, Any], message: dict[str, Any]) -> list[Emit]:
        if event.get("is_api_error_message"):
            return [self._api_error_message(event, message)]
        emits: list[Emit] = []
        reply_id = message.get("id")
        if not self._reply_open or reply_id != self._reply_id:
            self._reply_id, self._reply_open = reply_id, True
            if not self._streamed_usage:
                emits.append(self._usage(obj(message.get("usage"))))
        line_id = str(event.get("uuid") or self.new_id("message"))
        for index, block in enumerate(message["content"]):
            block = obj(block)
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                emits += self._text(block["text"], line_id if index == 0 else f"{line_id}-{index}")
            elif kind == "thinking" and isinstance(block.get("thinking"), str):
                emits.append(self.log(block["thinking"], kind="reasoning"))
            elif kind == "tool_use":
                emits.append(self._tool_use(block))
            elif kind != "redacted_thinking":
                emits.append(self.log(f"assistant content block {kind!r}", kind="unknown"))
        return emits

    def _text(self, text: str, line_id: str) -> list[Emit]:
        if self._stream_text is None:
            return self.message(text, self.id_prefix + line_id)
        message_id, _ = self._stream_text  # its deltas went out with the stream events
        self._stream_text = None
        return [self._completed(message_id, text)]

    def _completed(self, message_id: str, text: str) -> Emit:
        self.set_phase("answering")
        return Emit("message.completed",
                    {"message_id": message_id, "role": "assistant", "text": text})  # fmt: skip

    def _tool_use(self, block: dict[str, Any]) -> Emit:
        name = str(block.get("name") or "tool")
        arguments = obj(block.get("input"))
        tool_use_id = str(block.get("id") or self.new_id("call"))
        call_id = self.id_prefix + tool_use_id
        while call_id in self._used_ids:  # a replayed id (the scripted server's first reply)
            call_id = f"{self.id_prefix}{tool_use_id}-{self.new_id('dup')}"
        self._used_ids.add(call_id)
        self._calls[tool_use_id] = (call_id, name, arguments)
        command = str(arguments.get("command") or "") if name == "Bash" else ""
        emit = self.tool_call(call_id, name, arguments, command=command)
        if not command:
            self.set_phase(_PHASES.get(name.lower()))
        return emit

    def _user(self, event: dict[str, Any], message: dict[str, Any]) -> list[Emit]:
        self._reply_open = False
        content = message["content"]
        if isinstance(content, str):
            return [self.log(content, kind="user")]
        emits: list[Emit] = []
        for block in content if isinstance(content, list) else []:
            block = obj(block)
            if block.get("type") == "tool_result":
                emits += self._tool_result(block, event.get("tool_use_result"))
            elif block.get("type") == "text" and isinstance(block.get("text"), str):
                kind = "synthetic" if event.get("isSynthetic") else "user"
                emits.append(self.log(block["text"], kind=kind))
        return emits

    def _tool_result(self, block: dict[str, Any], meta: Any) -> list[Emit]:
        tool_use_id = str(block.get("tool_use_id") or "")
        call_id, name, arguments = self._calls.pop(
            tool_use_id, (self.id_prefix + tool_use_id, "tool", {}))  # fmt: skip
        output = _text_of(block.get("content"))
        is_error = block.get("is_error") is True
        meta = obj(meta)
        extra: dict[str, Any] = {}
        if name == "Bash":
            extra["exit_code"] = _exit_code(output, is_error, meta)
        emits = [self.tool_result(call_id, name, output, is_error, **extra)]
        if name in _FILE_TOOLS and not is_error:
            emits += self._file_change(name, arguments, meta)
        return emits

    def _file_change(
        self, name: str, arguments: dict[str, Any], meta: dict[str, Any]
    ) -> list[Emit]:
        path = meta.get("filePath") or arguments.get("file_path") or arguments.get(
            "notebook_path")  # fmt: skip
        if not isinstance(path, str) or not path:
            return []
        created = meta.get("type") == "create"
        patch = meta.get("structuredPatch")
        hunks: list[Any] = patch if isinstance(patch, list) else []
        if created and not hunks and isinstance(meta.get("content"), str):
            lines = meta["content"].splitlines()
            hunks = [{"oldStart": 0, "oldLines": 0, "newStart": 1, "newLines": len(lines),
                      "lines": [f"+{x}" for x in lines]}]  # fmt: skip
        diff, additions, deletions = _unified(self.relative(path), hunks, created)
        extra: dict[str, Any] = {}
        if diff:
            extra = {"diff": diff, "additions": additions, "deletions": deletions}
        return [self.file_changed(path, "created" if created else "modified", **extra)]

    def _stream(self, event: dict[str, Any]) -> list[Emit]:
        kind = event.get("type")
        if kind == "message_start":
            self._streamed_usage = True
            self._start_usage = obj(obj(event.get("message")).get("usage"))
            return []
        if kind == "message_delta":
            usage = {**self._start_usage, **obj(event.get("usage"))}
            self._start_usage = {}
            return [self._usage(usage)]
        if kind == "content_block_start" and obj(event.get("content_block")).get("type") == "text":
            self._stream_text = (self.new_id("message"), "")
            return []
        delta = obj(event.get("delta"))
        if kind == "content_block_delta" and delta.get("type") == "text_delta":
            text = delta["text"] if isinstance(delta.get("text"), str) else ""
            if self._stream_text is None:
                self._stream_text = (self.new_id("message"), "")
            message_id, so_far = self._stream_text
            self._stream_text = (message_id, so_far + text)
            return [Emit("message.delta", {"message_id": message_id, "text": text})] if text else []
        return []  # thinking/tool input deltas: the assistant line has the whole block

    def _result(self, event: dict[str, Any]) -> list[Emit]:
        self._reply_open = False
        emits: list[Emit] = []
        totals = obj(event.get("usage"))
        rest = {k: max(0, as_int(totals.get(k)) - self._summed[k]) for k in _USAGE_KEYS}
        cost = event.get("total_cost_usd")
        cost = cost if isinstance(cost, int | float) and not isinstance(cost, bool) else 0
        if any(rest.values()) or cost:
            emits.append(self._usage(rest, cost_usd=cost, new_step=self._steps == 0))
        if event.get("is_error") is not True:
            self.failed = None  # the run went on after an error: it was not fatal
            return emits
        if self._api_error:
            return emits  # the error line said it; the result repeats its text
        errors = [str(x) for x in event.get("errors") or [] if x]
        message = str(event.get("result") or "; ".join(errors) or event.get("subtype") or "")
        details: dict[str, Any] = {"subtype": event.get("subtype")}
        if isinstance(event.get("api_error_status"), int):
            details["status"] = event["api_error_status"]
        api = event.get("terminal_reason") == "api_error" or "status" in details
        emits.append(self.error("provider_error" if api else "agent_error",
                                message or "The Claude Code run failed.", details))  # fmt: skip
        return emits

    # -- helpers ---------------------------------------------------------------------------

    def _usage(self, usage: dict[str, Any], cost_usd: float = 0, *, new_step: bool = True) -> Emit:
        """A ``usage`` event (a new step, or the last step's remainder) and the sums so far."""
        for key in _USAGE_KEYS:
            self._summed[key] += as_int(usage.get(key))
        if new_step:
            self._steps += 1
        return self.usage(
            self._steps, usage.get("input_tokens"), usage.get("output_tokens"),
            usage.get("cache_read_input_tokens"), 0,
            cache_write_tokens=as_int(usage.get("cache_creation_input_tokens")), cost_usd=cost_usd,
        )  # fmt: skip

    def _api_error_message(self, event: dict[str, Any], message: dict[str, Any]) -> Emit:
        self._api_error = True
        self._reply_open = False
        text = " ".join(_text_of(message.get("content")).split()) or "The model API call failed."
        details: dict[str, Any] = {}
        if isinstance(event.get("api_error_status"), int):
            details["status"] = event["api_error_status"]
        for key, name in (("error", "error"), ("api_error_type", "type")):
            if isinstance(event.get(key), str):
                details[name] = event[key]
        return self.error("provider_error", text, details)


def _text_of(content: Any) -> str:
    """A tool result's or message's content: a string, or the text of its text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text")) for b in content
                         if isinstance(b, dict) and isinstance(b.get("text"), str))  # fmt: skip
    return ""


def _exit_code(output: str, is_error: bool, meta: dict[str, Any]) -> int | None:
    """A Bash call's exit code: the CLI reports a failure as ``Exit code N`` first, and a
    success (not interrupted, not sent to the background) as no error."""
    if is_error:
        found = _EXIT.match(output)
        return int(found.group(1)) if found else None
    if meta.get("interrupted") or meta.get("backgroundTaskId"):
        return None
    return 0


def _unified(path: str, hunks: list[Any], created: bool) -> tuple[str, int, int]:
    """A unified diff of ``structuredPatch`` hunks (``oldStart``, ``oldLines``, ``newStart``,
    ``newLines``, ``lines`` prefixed `` ``/``-``/``+``), its added and deleted line counts."""
    out = [f"--- {'/dev/null' if created else f'a/{path}'}", f"+++ b/{path}"]
    additions = deletions = 0
    for hunk in hunks:
        hunk = obj(hunk)
        lines = [x for x in hunk.get("lines") or [] if isinstance(x, str)]
        old, new = (f"{as_int(hunk.get(f'{side}Start'))},{as_int(hunk.get(f'{side}Lines'))}"
                    for side in ("old", "new"))  # fmt: skip
        out.append(f"@@ -{old} +{new} @@")
        out += lines
        additions += sum(1 for x in lines if x.startswith("+"))
        deletions += sum(1 for x in lines if x.startswith("-"))
    if len(out) == 2:
        return "", 0, 0
    return "\n".join(out) + "\n", additions, deletions

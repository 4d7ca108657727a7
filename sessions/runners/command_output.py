"""Where a ``command`` run's output goes: events, as it is produced.

A plain command's stdout and stderr become ``process.stdout`` / ``process.stderr`` events
(decoded incrementally as UTF-8, so a character split across reads is never mangled). A
coding-agent CLI's stdout (``spec.architecture``) goes line by line through its transcript
converter instead, whose events (messages, tool calls, file changes, usage, errors, logs) are
emitted in order, the run's phase following the transcript; its stderr stays
``process.stderr``. Either way the total is bounded by ``max_bytes`` (``limits.output_bytes``):
past it the output is counted, not kept, after one ``process.output_truncated`` event.

With ``spec.stdout_format: "events"`` a plain command reports progress of its own: each stdout
line that is a JSON object becomes one ``custom`` event whose ``data`` is that object (like
LangGraph's ``stream_mode="custom"`` and its ``get_stream_writer()``); any other line, and lines
over :data:`MAX_EVENT_LINE` bytes, stay ``process.stdout``.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from sessions.runners.architectures.run import ArchitectureRun
from sessions.runners.base import TaskContext

MAX_KEPT_LINES = 20_000  # raw transcript lines kept for .agent/runs/<task>/stdout.log
MAX_KEPT_STDERR = 1024 * 1024  # characters
MAX_EVENT_LINE = 64 * 1024  # characters: a longer JSON line stays process.stdout text
STDOUT_FORMATS = ("text", "events")


class CommandOutput:
    """Feed with :meth:`write` per chunk, then :meth:`close` and (for a CLI) :meth:`finish`.

    Attributes:
        emitted, dropped: bytes of output kept / counted past the limit.
        stderr: the CLI's stderr text (architectures only; at most :data:`MAX_KEPT_STDERR`).
    """

    def __init__(
        self,
        ctx: TaskContext,
        process_id: str,
        max_bytes: int,
        run: ArchitectureRun | None,
        stdout_format: str = "text",
    ) -> None:
        self.ctx = ctx
        self.process_id = process_id
        self.max_bytes = max_bytes
        self.run = run
        self.events = run is None and stdout_format == "events"
        self.emitted = 0
        self.dropped = 0
        self.stderr = ""
        self._line = ""
        self._decoders = {
            s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in ("stdout", "stderr")
        }

    def write(self, stream: str, data: bytes) -> bool:
        """Handle one chunk of ``stream``; True the first time the output passes the limit
        (the caller then stops the process)."""
        text = self._decoders[stream].decode(data)
        if self.emitted + len(data) > self.max_bytes:
            first = not self.dropped
            if first:
                self.ctx.emit(
                    "process.output_truncated",
                    {"process_id": self.process_id, "limit_bytes": self.max_bytes},
                )
            self.dropped += len(data)
            return first
        self.emitted += len(data)
        if text:
            self._text(stream, text)
        return False

    def close(self) -> None:
        """Flush what the decoders and the line buffer still hold."""
        for stream, decoder in self._decoders.items():
            tail = decoder.decode(b"", final=True)
            if tail:
                self._text(stream, tail)
        if (self.run is not None or self.events) and self._line:
            line, self._line = self._line, ""
            self._feed(line)

    def finish(self, exit_code: int | None) -> None:
        """Emit the converter's closing events (a CLI's failure without an error line)."""
        if self.run is not None:
            self._emit_all(self.run.converter.finish(-1 if exit_code is None else exit_code))

    def _text(self, stream: str, text: str) -> None:
        if self.events and stream == "stdout":
            self._line += text
            *lines, self._line = self._line.split("\n")
            for line in lines:
                self._feed(line + "\n")
            return
        if self.run is None or stream == "stderr":
            self.ctx.emit(f"process.{stream}", {"process_id": self.process_id, "text": text})
            if self.run is not None and len(self.stderr) < MAX_KEPT_STDERR:
                self.stderr += text[: MAX_KEPT_STDERR - len(self.stderr)]
            return
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            self._feed(line.rstrip("\r"))

    def _feed(self, line: str) -> None:
        if self.run is None:  # stdout_format "events"
            self._custom(line)
            return
        if len(self.run.stdout_lines) < MAX_KEPT_LINES:
            self.run.stdout_lines.append(line)
        self._emit_all(self.run.converter.feed(line))

    def _custom(self, line: str) -> None:
        text = line.rstrip("\r\n")
        if text.startswith("{") and len(text) <= MAX_EVENT_LINE:
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if isinstance(data, dict):
                self.ctx.emit("custom", data)
                return
        self.ctx.emit("process.stdout", {"process_id": self.process_id, "text": line})

    def _emit_all(self, emits: list[Any]) -> None:
        assert self.run is not None
        for item in emits:
            if item.type == "message.completed" and item.data.get("text"):
                self.run.last_message = str(item.data["text"])
            self.ctx.emit(item.type, item.data)
        phase = self.run.converter.phase
        if phase and phase != self.ctx.phase:
            self.ctx.set_phase(phase)

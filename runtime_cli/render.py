"""Terminal output: events as a person reads them, a status line for long tasks, tables.

Output goes where a shell user expects it: what the task printed (``process.stdout``, the
model's reply) to stdout exactly as produced, its stderr to stderr, and the CLI's own remarks
(tool calls, status, errors) to stderr, so ``runtime run … > out.txt`` captures the output only.
The status line is drawn on stderr, only when stderr is a terminal, and only while nothing is
half-printed on the line it would overwrite.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

TOOL_ARGS_CHARS = 100
QUIET_BEFORE_STATUS_S = 0.4  # show the spinner again once output paused this long
STATUS_SYMBOL = {"succeeded": "✓", "failed": "✗", "cancelled": "⊘", "timed_out": "⏱"}


def err_console() -> Console:
    """rich output on stderr (colours only on a terminal)."""
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class StatusLine:
    """A spinner with the task's status, elapsed time and event count on stderr (a terminal).

    Drawn with rich's ``Live`` (transient, so it leaves nothing behind); hidden while output
    flows and shown again after a quiet moment, so it never splits a line of output.
    """

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self.status = "queued"
        self.events = 0
        self.started = time.monotonic()
        self.live: Live | None = None
        self.last_output = 0.0
        self.spinner = Spinner("dots", style="cyan")

    def _render(self) -> Spinner:
        text = Text.assemble(
            (f" {self.status}", "bold"),
            f" · {self.label} · {elapsed(time.monotonic() - self.started)} · "
            f"{self.events} event{'s' if self.events != 1 else ''}",
            style="dim" if self.status == "queued" else "",
        )
        self.spinner.update(text=text)
        return self.spinner

    def hide(self) -> None:
        self.last_output = time.monotonic()
        if self.live is not None:
            self.live.stop()
            self.live = None

    def tick(self, *, at_line_start: bool) -> None:
        if self.live is not None or not at_line_start:
            return
        if time.monotonic() - self.last_output < QUIET_BEFORE_STATUS_S:
            return
        self.live = Live(
            get_renderable=self._render, console=self.console, transient=True,
            refresh_per_second=8, redirect_stdout=False, redirect_stderr=False,
        )  # fmt: skip
        self.live.start()


class EventPrinter:
    """Prints event envelopes for a person (or, with ``json_lines``, one JSON object a line).

    ``status`` is the last ``task.status`` seen; ``error`` the terminal error, if any.
    """

    def __init__(
        self,
        *,
        json_lines: bool = False,
        status_line: StatusLine | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.json_lines = json_lines
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.console = Console(file=self.err, highlight=False, soft_wrap=True)
        self.status_line = status_line
        self.status: str | None = None
        self.error: dict[str, Any] | None = None
        self.task_id: str | None = None
        self.events = 0
        self.streamed: set[str] = set()  # message ids whose text came as deltas
        # Per stream (id of the file): the last character written was not a newline.
        self.mid_line: dict[int, bool] = {}
        # Only a terminal gets newlines of ours to finish a half-written line; a file or pipe
        # receives the program's bytes exactly.
        self.ttys = {id(f) for f in (self.out, self.err) if _isatty(f)}

    # -- low-level writing ---------------------------------------------------------------
    def _write(self, stream: TextIO, text: str) -> None:
        if not text:
            return
        if self.status_line is not None and id(stream) in self.ttys:
            self.status_line.hide()
        stream.write(text)
        stream.flush()
        self.mid_line[id(stream)] = not text.endswith("\n")

    def _end_lines(self) -> None:
        """Finish any half-written line so the next remark starts on its own line."""
        for stream in (self.out, self.err):
            if self.mid_line.get(id(stream)) and id(stream) in self.ttys:
                self._write(stream, "\n")

    def note(self, text: str, style: str = "dim") -> None:
        """One remark of the CLI's own on stderr."""
        self._end_lines()
        if self.status_line is not None:
            self.status_line.hide()
        self.console.print(Text(text, style=style))
        self.mid_line[id(self.err)] = False

    @property
    def at_line_start(self) -> bool:
        return not any(mid for key, mid in self.mid_line.items() if key in self.ttys)

    def tick(self) -> None:
        """Nothing arrived for a moment: let the status line show itself."""
        if self.status_line is not None:
            self.status_line.tick(at_line_start=self.at_line_start)

    # -- events ----------------------------------------------------------------------------
    def handle(self, event: dict[str, Any]) -> None:
        self.events += 1
        self.task_id = event.get("task_id") or self.task_id
        kind, data = event.get("type", ""), event.get("data") or {}
        if kind == "task.status":
            self.status = data.get("status")
            if data.get("error"):
                self.error = data["error"]
        if self.status_line is not None:
            self.status_line.events = self.events
            self.status_line.status = self.status or self.status_line.status
        if self.json_lines:
            self._write(self.out, json.dumps(event, default=str) + "\n")
            return
        handler = getattr(self, "on_" + kind.replace(".", "_"), None)
        if handler is not None:
            handler(data)

    def on_process_stdout(self, data: dict[str, Any]) -> None:
        self._write(self.out, str(data.get("text", "")))

    def on_process_stderr(self, data: dict[str, Any]) -> None:
        self._write(self.err, str(data.get("text", "")))

    def on_process_output_truncated(self, data: dict[str, Any]) -> None:
        self.note("[output truncated by the server's output limit]", "yellow")

    def on_message_delta(self, data: dict[str, Any]) -> None:
        if data.get("message_id"):
            self.streamed.add(str(data["message_id"]))
        self._write(self.out, str(data.get("text", "")))

    def on_message_completed(self, data: dict[str, Any]) -> None:
        if str(data.get("message_id")) not in self.streamed and data.get("text"):
            self._write(self.out, str(data["text"]))
        if self.mid_line.get(id(self.out)):
            self._write(self.out, "\n")

    def on_tool_call(self, data: dict[str, Any]) -> None:
        args = data.get("arguments")
        shown = short(args, TOOL_ARGS_CHARS) if args not in (None, {}, "") else ""
        self.note(f"→ {data.get('name', 'tool')}({shown})", "cyan")

    def on_tool_result(self, data: dict[str, Any]) -> None:
        output = data.get("output")
        text = output if isinstance(output, str) else json.dumps(output, default=str)
        if data.get("is_error") or data.get("error"):
            self.note(f"← {data.get('name', 'tool')} failed: {short(text, 200)}", "red")
        else:
            lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
            count = f"{lines} line{'s' if lines != 1 else ''}"
            self.note(f"← {data.get('name', 'tool')}: {short(text, 80)} ({count})", "dim")

    def on_output_display(self, data: dict[str, Any]) -> None:
        bundle = data.get("data") if isinstance(data.get("data"), dict) else data
        text = bundle.get("text/plain") if isinstance(bundle, dict) else None
        if text:
            self._write(self.out, str(text).rstrip("\n") + "\n")

    def on_output_error(self, data: dict[str, Any]) -> None:
        traceback = data.get("traceback")
        if isinstance(traceback, list) and traceback:
            self._end_lines()
            self._write(self.err, "\n".join(str(t) for t in traceback) + "\n")
        else:
            self.note(f"{data.get('ename', 'Error')}: {data.get('evalue', '')}", "red")

    def on_log(self, data: dict[str, Any]) -> None:
        level = str(data.get("level", "info"))
        if level in ("warning", "error", "critical"):
            self.note(f"[{level}] {data.get('message', '')}", "yellow")

    def on_error(self, data: dict[str, Any]) -> None:
        self.note(f"error: {data.get('code', '')}: {data.get('message', '')}", "red")

    def on_input_requested(self, data: dict[str, Any]) -> None:
        task = self.task_id or "<task>"
        if data.get("kind") == "approval":
            call = f"{data.get('name')}({short(data.get('arguments'), TOOL_ARGS_CHARS)})"
            self.note(f"⏸ the task asks to run {call}; answer with "
                      f"`runtime tasks resume {task} --approve` (or --deny)", "yellow")  # fmt: skip
        else:
            self.note(f"⏸ the task asks: {data.get('question', '')}\n  answer with "
                      f"`runtime tasks resume {task} --reply '…'`", "yellow")  # fmt: skip

    def on_task_status(self, data: dict[str, Any]) -> None:
        if data.get("status") == "queued" and data.get("reason"):
            self.note(f"requeued ({data['reason']})", "yellow")

    def close(self) -> None:
        """End a half-written line (after printing stored events)."""
        self._end_lines()

    def finish(self, *, label: str, seconds: float, always: bool) -> None:
        """End the output cleanly and, for a task that did not succeed (or ``always``), say
        how it ended on stderr."""
        self._end_lines()
        if self.status_line is not None:
            self.status_line.hide()
        if self.json_lines or self.status is None:
            return
        if self.status == "succeeded" and not always:
            return
        symbol = STATUS_SYMBOL.get(self.status, "•")
        line = f"{symbol} {label} {self.status} after {elapsed(seconds)}"
        if self.error and self.status != "succeeded":
            line += f": {self.error.get('message') or self.error.get('code')}"
        self.note(line, "green" if self.status == "succeeded" else "red")


# -- tables and records -----------------------------------------------------------------------
def table(rows: list[dict[str, Any]], columns: list[str], *, out: TextIO | None = None) -> None:
    """``rows`` under ``columns``: a rich table on a terminal, aligned plain text otherwise
    (whole values, never truncated, for grep and cut)."""
    out = out or sys.stdout
    cells = [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    if out.isatty():
        grid = Table(box=None, header_style="bold", pad_edge=False)
        for column in columns:
            last = column == columns[-1]  # ids stay whole; only the last column is cut short
            grid.add_column(column.upper(), no_wrap=not last, overflow="ellipsis")
        for line in cells:
            grid.add_row(*line)
        Console(file=out, highlight=False).print(grid)
        return
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    for line in [[c.upper() for c in columns], *cells]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")


def record(fields: list[tuple[str, Any]], *, out: TextIO | None = None) -> None:
    """``key: value`` lines; dicts and lists as compact JSON."""
    out = out or sys.stdout
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        if value is None or value in ("", {}, []):
            continue
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        out.write(f"{key.ljust(width)}  {shown}\n")


def print_json(value: Any, *, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(value, indent=2, default=str) + "\n")

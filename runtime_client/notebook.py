"""Run a ``python`` task's cells on a kernel and stream their outputs as runtime events.

One code path for every place a ``python`` task runs: the server's notebook runtime (a kernel in
the session's sandbox behind ``runtime_client.bridge``) and the remote runtime client (a kernel on
the user's machine). Kernel messages (Jupyter messaging spec) become events, per cell ``i``:

* ``cell.started`` ``{"cell", "code", "language"}`` (code cut at 2,000 characters; language
  ``python`` or ``sql``);
* ``process.stdout`` / ``process.stderr`` ``{"process_id": "kernel", "cell", "text"}``;
* ``output.display`` ``{"cell", "output_type", "data", "metadata", "execution_count",
  "display_id"}`` for ``display_data``, ``update_display_data`` and ``execute_result`` (``data``
  is the full MIME bundle: ``text/plain``, ``text/html``, ``image/png`` base64, …);
* ``output.clear`` ``{"cell", "wait"}``; ``output.error`` ``{"cell", "ename", "evalue",
  "traceback"}``;
* ``cell.finished`` ``{"cell", "status": "ok"|"error"|"aborted", "execution_count",
  "duration_ms"}``.

Task input: ``{"cells": ["…", {"sql": "…"}, {"ai": "…"}, …]}`` (SQL cells need a SQL cell
runner, see ``runtime_client.sql``; AI cells a model, see :func:`run_ai_cell`), ``{"code": "…"}``,
or ``{"notebook": "path.ipynb",
"output_path"?}`` (the notebook's code cells run in order and the executed notebook, outputs
included, is written back: to ``output_path``, else in place, like ``jupyter nbconvert --execute
--inplace``). ``allow_errors`` (default false) keeps going after a cell raises; otherwise the
first error stops the task with ``cell_error``. ``restart: true`` starts from a fresh kernel.

The outcome is ``{"status": "succeeded"|"failed", "result", "error", "usage"}``; ``result`` is
``{"cells": [{"cell", "status", "execution_count"}], "execution_count", "output"}`` where
``output`` is the last ``execute_result``'s bundle (or null).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from runtime_client.kernel import Kernel, KernelDied

Emit = Callable[[str, dict[str, Any]], Any]  # may return an awaitable (it is awaited)
CODE_PREVIEW_CHARS = 2000
_DISPLAY_TYPES = ("display_data", "update_display_data", "execute_result")


async def _send(emit: Emit, event_type: str, data: dict[str, Any]) -> None:
    result = emit(event_type, data)
    if inspect.isawaitable(result):
        await result


def events_for(msg: dict[str, Any], cell: int) -> list[tuple[str, dict[str, Any]]]:
    """The events one kernel message becomes (``[]`` for messages clients don't see)."""
    kind, content = msg["msg_type"], msg.get("content") or {}
    if kind == "stream":
        name = "stderr" if content.get("name") == "stderr" else "stdout"
        return [(f"process.{name}", {"process_id": "kernel", "cell": cell,
                                     "text": str(content.get("text", ""))})]  # fmt: skip
    if kind in _DISPLAY_TYPES:
        return [("output.display", {
            "cell": cell,
            "output_type": kind,
            "data": content.get("data") or {},
            "metadata": content.get("metadata") or {},
            "execution_count": content.get("execution_count"),
            "display_id": (content.get("transient") or {}).get("display_id"),
        })]  # fmt: skip
    if kind == "error":
        return [("output.error", {"cell": cell, "ename": content.get("ename", ""),
                                  "evalue": content.get("evalue", ""),
                                  "traceback": list(content.get("traceback") or [])})]  # fmt: skip
    if kind == "clear_output":
        return [("output.clear", {"cell": cell, "wait": bool(content.get("wait"))})]
    return []


def notebook_output(msg: dict[str, Any]) -> dict[str, Any] | None:
    """The ``.ipynb`` output (nbformat v4) a kernel message becomes, else None."""
    if msg["msg_type"] not in ("stream", "display_data", "execute_result", "error"):
        return None
    from nbformat.v4 import output_from_msg

    out: dict[str, Any] = output_from_msg({"msg_type": msg["msg_type"], "content": msg["content"],
                                           "header": {"msg_type": msg["msg_type"]}})  # fmt: skip
    return out  # a NotebookNode: nbformat.writes needs attribute access


async def run_cell(
    kernel: Kernel,
    code: str,
    cell: int,
    emit: Emit,
    cancel: asyncio.Event,
    *,
    source: str | None = None,
    language: str = "python",
    displays: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Execute one cell, streaming its events. ``source`` is what ``cell.started`` shows when
    it differs from the code run (a SQL cell). Returns ``{"cell", "status", "execution_count",
    "outputs", "error", "duration_ms"}`` (``outputs`` in nbformat form, ``error`` the
    ``{ename, evalue}`` of a raised exception). Raises KernelDied.

    ``outputs`` follow the notebook semantics nbclient implements: ``clear_output(wait=True)``
    clears when the next output arrives, and ``update_display_data`` rewrites the outputs shown
    earlier with that ``display_id`` (in ``displays``, shared by the cells of one run)."""
    shown = (source if source is not None else code)[:CODE_PREVIEW_CHARS]
    await _send(emit, "cell.started", {"cell": cell, "code": shown, "language": language})
    started = time.monotonic()
    outputs: list[dict[str, Any]] = []
    error: dict[str, Any] | None = None
    reply: dict[str, Any] = {}
    interrupted = False
    clear_pending = False
    displays = displays if displays is not None else {}

    async def interrupt_on_cancel() -> None:
        nonlocal interrupted
        await cancel.wait()
        interrupted = True
        await kernel.interrupt()

    watcher = asyncio.ensure_future(interrupt_on_cancel())
    try:
        async for msg in kernel.execute(code):
            if msg["msg_type"] == "execute_reply":
                reply = msg["content"]
                continue
            for event_type, data in events_for(msg, cell):
                await _send(emit, event_type, data)
            if msg["msg_type"] == "error":
                error = {"ename": msg["content"].get("ename", ""),
                         "evalue": msg["content"].get("evalue", "")}  # fmt: skip
            kind, content = msg["msg_type"], msg.get("content") or {}
            display_id = (content.get("transient") or {}).get("display_id")
            if kind == "clear_output":
                clear_pending = bool(content.get("wait"))
                if not clear_pending:
                    outputs.clear()
            elif kind == "update_display_data":
                for earlier in displays.get(display_id or "", []):
                    earlier["data"] = content.get("data") or {}
                    earlier["metadata"] = content.get("metadata") or {}
            out = notebook_output(msg)
            if out is not None:
                if clear_pending:
                    outputs.clear()
                    clear_pending = False
                outputs.append(out)
                if display_id and kind == "display_data":
                    displays.setdefault(display_id, []).append(out)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    status = reply.get("status", "error")
    if interrupted:
        status = "aborted"
    elif status != "ok":
        status = "error"
    result = {
        "cell": cell,
        "status": status,
        "execution_count": reply.get("execution_count"),
        "outputs": outputs,
        "error": error,
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
    await _send(emit, "cell.finished", {k: result[k] for k in ("cell", "status", "execution_count",
                                                  "duration_ms")})  # fmt: skip
    return result


class AICellError(Exception):
    """An AI cell's model call failed (the message is safe to show: no keys)."""


AI = Callable[[int, str], Awaitable[dict[str, Any]]]
BeforeCell = Callable[[int, str, str], Awaitable[str]]  # (index, code, language) -> code


async def run_ai_cell(ai: AI, prompt: str, cell: int, emit: Emit) -> dict[str, Any]:
    """An ``{"ai": "prompt"}`` cell (like jupyter-ai's ``%%ai`` magic): ``ai(cell, prompt)``
    asks the agent's model (streaming ``message.*`` events itself) and returns ``{"text",
    "usage"}``; the reply is displayed as ``text/markdown``. Same outcome shape as
    :func:`run_cell` (``execution_count`` is null: the kernel did not run it)."""
    await _send(emit, "cell.started", {"cell": cell, "code": prompt[:CODE_PREVIEW_CHARS],
                                       "language": "ai"})  # fmt: skip
    started = time.monotonic()
    outputs: list[dict[str, Any]] = []
    error = None
    usage: dict[str, Any] = {}
    try:
        reply = await ai(cell, prompt)
        usage = reply.get("usage") or {}
        msg = {"msg_type": "display_data", "content": {
            "data": {"text/markdown": reply["text"], "text/plain": reply["text"]},
            "metadata": {}, "transient": {}}}  # fmt: skip
    except AICellError as exc:
        error = {"ename": "AICellError", "evalue": str(exc)}
        msg = {"msg_type": "error", "content": {**error, "traceback": [f"AICellError: {exc}"]}}
    for event_type, data in events_for(msg, cell):
        await _send(emit, event_type, data)
    out = notebook_output(msg)
    if out is not None:
        outputs.append(out)
    result = {"cell": cell, "status": "error" if error else "ok", "execution_count": None,
              "outputs": outputs, "error": error, "usage": usage,
              "duration_ms": int((time.monotonic() - started) * 1000)}  # fmt: skip
    await _send(emit, "cell.finished", {k: result[k] for k in ("cell", "status",
                "execution_count", "duration_ms")})  # fmt: skip
    return result


def _failure(code: str, message: str, details: dict[str, Any], result: Any) -> dict[str, Any]:
    return {"status": "failed", "result": result, "usage": {},
            "error": {"code": code, "message": message, "details": details}}  # fmt: skip


def cells_of(
    task_input: dict[str, Any], sql: dict[str, Any] | None = None
) -> list[tuple[str, str | None, str]]:
    """``(code, shown source, language)`` per cell of a ``cells``/``code`` input. A
    ``{"sql": "…"}`` cell needs ``sql`` (the SQL cell runner's config, ``database`` as the kernel
    sees it; ``runtime_client.sql``).

    Raises:
        ValueError: a SQL cell without a SQL cell runner, or a cell of another shape.
    """
    from runtime_client.sql import sql_cell_code

    items = task_input["cells"] if "cells" in task_input else [task_input.get("code", "")]
    cells: list[tuple[str, str | None, str]] = []
    for item in items:
        if isinstance(item, str):
            cells.append((item, None, "python"))
        elif isinstance(item, dict) and isinstance(item.get("sql"), str):
            if not sql:
                raise ValueError("This agent has no SQL cell runner (spec.sql).")
            cells.append((sql_cell_code(item["sql"], sql, sql["database"]), item["sql"], "sql"))
        elif isinstance(item, dict) and isinstance(item.get("ai"), str):
            cells.append((item["ai"], None, "ai"))
        else:
            raise ValueError('A cell is a string of code, {"sql": "…"} or {"ai": "…"}.')  # noqa: TRY004
    return cells


async def run_python_task(
    kernel: Kernel,
    task_input: dict[str, Any],
    emit: Emit,
    *,
    cancel: asyncio.Event,
    workspace: Path | None = None,
    read_file: Callable[[str], bytes] | None = None,
    write_file: Callable[[str, bytes], None] | None = None,
    sql: dict[str, Any] | None = None,
    ai: AI | None = None,
    before_cell: BeforeCell | None = None,
) -> dict[str, Any]:
    """Run a ``python`` task (see the module docstring) and return its outcome dict.
    ``before_cell(index, code, language)`` is awaited before each cell and returns the code to
    run (the server's debugger pauses there and may edit a python cell).
    ``sql`` configures SQL cells (see :func:`cells_of`), ``ai`` runs AI cells (see
    :func:`run_ai_cell`; without it an AI cell fails the task with ``invalid_input``).

    ``read_file``/``write_file`` give access to the workspace by relative path (the server
    passes its symlink-safe helpers); by default they are plain file access under
    ``workspace``. Only notebook tasks use them.
    """
    root = Path(workspace or ".")
    reader = read_file or (lambda p: (root / p).read_bytes())
    writer = write_file or (lambda p, data: (root / p).write_bytes(data))
    started = time.monotonic()
    if task_input.get("restart"):
        await kernel.restart()
        await _send(emit, "kernel.restarted", {"reason": "requested"})
    else:
        try:
            fresh = await kernel.ensure()
        except KernelDied as exc:
            return _failure("kernel_died", exc.reason, {}, None)
        if fresh:
            # Variables of earlier tasks are gone (first task, or the last kernel died).
            await _send(emit, "kernel.started", {"started": kernel.started,
                        "duration_ms": int((time.monotonic() - started) * 1000)})  # fmt: skip
    notebook = None
    if "notebook" in task_input:
        import nbformat

        try:
            notebook = nbformat.reads(reader(str(task_input["notebook"])).decode(), as_version=4)
        except Exception as exc:  # unreadable, missing, not JSON, not a notebook
            return _failure("invalid_notebook", f"Cannot read the notebook: {exc}",
                            {"path": task_input["notebook"]}, None)  # fmt: skip
        cells: list[tuple[int, tuple[str, str | None, str]]] = [
            (i, (c.source, None, "python"))
            for i, c in enumerate(notebook.cells)
            if c.cell_type == "code"
        ]
    else:
        try:
            cells = list(enumerate(cells_of(task_input, sql)))
        except ValueError as exc:
            return _failure("invalid_input", str(exc), {}, None)
        if ai is None and any(language == "ai" for _, (_, _, language) in cells):
            return _failure("invalid_input", "This agent has no model for AI cells (spec.model).",
                            {}, None)  # fmt: skip
    allow_errors = bool(task_input.get("allow_errors", False))
    done: list[dict[str, Any]] = []
    output = None
    failure = None
    usage: dict[str, Any] = {}
    displays: dict[str, list[dict[str, Any]]] = {}
    for index, (code, source, language) in cells:
        if cancel.is_set():
            break
        if before_cell is not None:
            code = await before_cell(index, code, language)
        try:
            if language == "ai":
                assert ai is not None
                outcome = await run_ai_cell(ai, code, index, emit)
                for key, value in outcome["usage"].items():
                    usage[key] = usage.get(key, 0) + value
            else:
                outcome = await run_cell(kernel, code, index, emit, cancel, source=source,
                                         language=language, displays=displays)  # fmt: skip
        except KernelDied as exc:
            await _send(emit, "kernel.died", {"cell": index, "reason": exc.reason})
            message = (f"The kernel died while running cell {index}: {exc.reason} "
                       "A fresh kernel starts with the next task.")  # fmt: skip
            failure = ("kernel_died", message, {"cell": index})
            break
        done.append(outcome)
        if notebook is not None:
            notebook.cells[index].outputs = outcome["outputs"]
            notebook.cells[index].execution_count = outcome["execution_count"]
        for out in outcome["outputs"]:
            if out.get("output_type") == "execute_result":
                output = dict(out.get("data") or {})
        if outcome["status"] == "aborted" or cancel.is_set():
            break
        if outcome["status"] == "error" and not allow_errors:
            err = outcome["error"] or {}
            message = f"Cell {index} raised {err.get('ename', 'an error')}: {err.get('evalue', '')}"
            failure = ("cell_error", message, {"cell": index, **err})
            break
    result: dict[str, Any] = {
        "cells": [{k: c[k] for k in ("cell", "status", "execution_count")} for c in done],
        "execution_count": done[-1]["execution_count"] if done else None,
        "output": output,
    }
    if notebook is not None:
        import nbformat

        target = str(task_input.get("output_path") or task_input["notebook"])
        writer(target, nbformat.writes(notebook).encode())
        result["notebook"] = target
        await _send(emit, "file.changed", {"path": target, "change": "modified"})
    if cancel.is_set():
        return {**_failure("cancelled", "The task was cancelled.", {}, result), "usage": usage}
    if failure:
        return {**_failure(*failure, result), "usage": usage}
    return {"status": "succeeded", "result": result, "error": None, "usage": usage}

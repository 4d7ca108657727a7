"""The browser runtime's kernel: runs ``python`` task cells inside Pyodide the way
``runtime_client.notebook`` runs them on a Jupyter kernel (docs/browser-runtime.md).

Served as a static file and loaded by ``pyodide-worker.js`` into the page's one Pyodide
interpreter; it is plain Python with no Pyodide import, so the tests also run it on CPython
(tests/browser/test_pyodide_kernel.py).

:class:`Kernel` keeps one namespace for every task of the page. ``run_cell`` emits, through the
``emit`` callback (one JSON text ``{"type", "data"}`` per event), ``cell.started``,
``process.stdout``/``process.stderr``, ``output.display`` (``execute_result`` for a last
expression that is not None, ``display_data`` for ``display(obj)``), ``output.clear``,
``output.error`` and ``cell.finished``, with the payloads of ``runtime_client.notebook``. MIME
bundles follow IPython's display protocol: ``text/plain`` is ``repr(obj)``, and an object's
``_repr_mimebundle_`` / ``_repr_html_`` / ``_repr_png_`` / … methods add their types.
"""

from __future__ import annotations

import ast
import base64
import builtins
import inspect
import io
import json
import linecache
import sys
import time
import tokenize
import traceback
from collections.abc import Callable
from typing import Any

CODE_PREVIEW_CHARS = 2000
STREAM_CHUNK_CHARS = 8192  # a stream sends what it holds once it reaches this size

# IPython's formatters, in its order (IPython.core.formatters.DisplayFormatter).
REPR_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("application/pdf", "_repr_pdf_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
)
BINARY_TYPES = {"image/png", "image/jpeg", "application/pdf"}

Emit = Callable[[str], Any]


def _plain(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:
        return object.__repr__(obj)


def _jsonable(mime: str, value: Any) -> Any:
    """``value`` as it goes into a bundle, or None when it cannot."""
    if mime in BINARY_TYPES and isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if mime == "application/json":
        try:
            return json.loads(json.dumps(value))
        except (TypeError, ValueError):
            return None
    return value if isinstance(value, str) else None


def format_bundle(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``(data, metadata)`` MIME bundle of ``obj`` (IPython's display protocol)."""
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    if not inspect.isclass(obj):
        method = getattr(obj, "_repr_mimebundle_", None)
        if callable(method):
            try:
                bundle = method(include=None, exclude=None)
            except Exception:
                bundle = None
            if isinstance(bundle, tuple) and len(bundle) == 2:
                bundle, extra = bundle
                if isinstance(extra, dict):
                    metadata.update(extra)
            if isinstance(bundle, dict):
                for mime, value in bundle.items():
                    converted = _jsonable(str(mime), value)
                    if converted is not None:
                        data[str(mime)] = converted
        for mime, name in REPR_METHODS:
            method = getattr(obj, name, None)
            if mime in data or not callable(method):
                continue
            try:
                value = method()
            except Exception:  # noqa: S112 - IPython warns and leaves the type out
                continue
            if isinstance(value, tuple) and len(value) == 2:
                value, extra = value
                if isinstance(extra, dict):
                    metadata[mime] = extra
            converted = _jsonable(mime, value) if value is not None else None
            if converted is not None:
                data[mime] = converted
    data.setdefault("text/plain", _plain(obj))
    return data, metadata


def ends_with_semicolon(code: str) -> bool:
    """IPython's rule: a cell whose last token is ``;`` shows no result."""
    last = None
    skip = {tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER,
            tokenize.INDENT, tokenize.DEDENT}  # fmt: skip
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type not in skip:
                last = tok
    except (tokenize.TokenError, SyntaxError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


class OutStream(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` during a cell: text goes out as ``process.<name>``
    events, a line at a time (or every ``STREAM_CHUNK_CHARS``), and on ``flush()``."""

    def __init__(self, kernel: Kernel, name: str) -> None:
        super().__init__()
        self._kernel = kernel
        self.name = name
        self._buffer: list[str] = []
        self._size = 0

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:  # type: ignore[override]
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._buffer.append(text)
            self._size += len(text)
            if "\n" in text or "\r" in text or self._size >= STREAM_CHUNK_CHARS:
                self.flush()
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            text, self._buffer, self._size = "".join(self._buffer), [], 0
            self._kernel.stream(self.name, text)


class Kernel:
    """One interpreter's state: the user namespace and the execution counter.

    Args:
        emit: called with one JSON text ``{"type", "data"}`` per event.
    """

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self.execution_count = 0
        self.cell: int | None = None  # the index of the running cell
        self.namespace: dict[str, Any] = {}
        self.stdout = OutStream(self, "stdout")
        self.stderr = OutStream(self, "stderr")
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every variable and restart the count (the task input's ``restart: true``)."""
        self.execution_count = 0
        self.namespace.clear()
        self.namespace.update(
            __name__="__main__",
            __builtins__=builtins,
            display=self.display,
            clear_output=self.clear_output,
        )

    def install_builtins(self) -> None:
        """Make ``display`` and ``clear_output`` builtins, as IPython does (the worker calls
        this; the CPython tests keep them in the namespace only)."""
        builtins.display = self.display  # type: ignore[attr-defined]
        builtins.clear_output = self.clear_output  # type: ignore[attr-defined]

    # -- events --------------------------------------------------------------------------------
    def event(self, event_type: str, data: dict[str, Any]) -> None:
        self._emit(json.dumps({"type": event_type, "data": data}, default=_plain))

    def stream(self, name: str, text: str) -> None:
        """Text written to stdout/stderr (also by the worker for Pyodide's fd-level output)."""
        self.event(f"process.{name}", {"process_id": "kernel", "cell": self.cell, "text": text})

    def flush(self) -> None:
        self.stdout.flush()
        self.stderr.flush()

    def _display(self, output_type: str, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.flush()  # what the cell printed before comes first
        self.event(
            "output.display",
            {
                "cell": self.cell,
                "output_type": output_type,
                "data": data,
                "metadata": metadata,
                "execution_count": self.execution_count
                if output_type == "execute_result"
                else None,
                "display_id": None,
            },
        )

    def display(self, *objs: Any, raw: bool = False, metadata: dict[str, Any] | None = None,
                **_ignored: Any) -> None:  # fmt: skip
        """``display(obj, ...)``: one ``display_data`` output per object (``raw=True``: the
        objects are MIME bundles already)."""
        for obj in objs:
            md: dict[str, Any] = {}
            if raw and isinstance(obj, dict):
                data = {str(k): v for k, v in obj.items()}
            else:
                data, md = format_bundle(obj)
            self._display("display_data", data, {**md, **(metadata or {})})

    def clear_output(self, wait: bool = False) -> None:
        self.flush()
        self.event("output.clear", {"cell": self.cell, "wait": bool(wait)})

    # -- execution -----------------------------------------------------------------------------
    async def _run(self, code: str, filename: str) -> Any:
        """Execute ``code``; the value of a last bare expression (None when there is none or the
        cell ends with ``;``). Top-level ``await`` works, as in IPython."""
        tree = ast.parse(code, filename, "exec")
        last: ast.Expression | None = None
        final = tree.body[-1] if tree.body else None
        if isinstance(final, ast.Expr) and not ends_with_semicolon(code):
            tree.body.pop()
            last = ast.Expression(final.value)
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        body = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
        outcome = eval(body, self.namespace)  # noqa: S307 - running the user's code is the job
        if body.co_flags & inspect.CO_COROUTINE:
            await outcome
        if last is None:
            return None
        expr = compile(last, filename, "eval", flags=flags, dont_inherit=True)
        value = eval(expr, self.namespace)  # noqa: S307
        if expr.co_flags & inspect.CO_COROUTINE:
            value = await value
        return value

    def _traceback(self, exc: BaseException) -> list[str]:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next  # the kernel's own frames are not the user's business
        lines = traceback.format_exception(type(exc), exc, tb)
        return [line.rstrip("\n") for line in lines]

    async def run_cell(self, index: int, code: str) -> str:
        """Run one cell, emitting its events. Returns the JSON text of ``{"cell", "status",
        "execution_count", "duration_ms", "error": {"ename", "evalue"}|null, "output": the
        execute_result bundle|null}``; ``status`` is ``aborted`` when a KeyboardInterrupt (the
        page's interrupt on cancel) stopped it."""
        self.cell = index
        self.execution_count += 1
        count = self.execution_count
        started = time.monotonic()
        self.event(
            "cell.started", {"cell": index, "code": code[:CODE_PREVIEW_CHARS], "language": "python"}
        )
        filename = f"<cell-{count}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        status, error, output = "ok", None, None
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.stdout, self.stderr  # type: ignore[assignment]
        try:
            value = await self._run(code, filename)
            if value is not None:
                self.namespace["_"] = value
                data, metadata = format_bundle(value)
                self._display("execute_result", data, metadata)
                output = data
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are the cell's too
            self.flush()
            status = "aborted" if isinstance(exc, KeyboardInterrupt) else "error"
            error = {"ename": type(exc).__name__, "evalue": str(exc)}
            self.event("output.error", {"cell": index, **error,
                                        "traceback": self._traceback(exc)})  # fmt: skip
        finally:
            self.flush()
            sys.stdout, sys.stderr = saved
        outcome = {"cell": index, "status": status, "execution_count": count,
                   "duration_ms": int((time.monotonic() - started) * 1000)}  # fmt: skip
        self.event("cell.finished", outcome)
        self.cell = None
        return json.dumps({**outcome, "error": error, "output": output}, default=_plain)

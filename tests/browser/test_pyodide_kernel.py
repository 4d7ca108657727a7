"""The browser runtime's kernel (runtimes/static/runtimes/pyodide_kernel.py) on CPython: the
same code runs in the page's Pyodide, where tests/browser/test_browser_runtime.py drives it."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

KERNEL_PATH = Path(__file__).resolve().parents[2] / "runtimes/static/runtimes/pyodide_kernel.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pyodide_kernel_under_test", KERNEL_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pk = _load()


class Recorder:
    def __init__(self) -> None:
        self.kernel = pk.Kernel(self.emit)
        self.events: list[dict[str, Any]] = []

    def emit(self, text: str) -> None:
        self.events.append(json.loads(text))

    def run(self, index: int, code: str) -> dict[str, Any]:
        self.events.clear()
        return json.loads(asyncio.run(self.kernel.run_cell(index, code)))

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def stdout(self) -> str:
        return "".join(e["data"]["text"] for e in self.events if e["type"] == "process.stdout")


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


class Rich:
    def __repr__(self) -> str:
        return "Rich()"

    def _repr_html_(self) -> str:
        return "<b>rich</b>"

    def _repr_png_(self) -> bytes:
        return b"\x89PNG fake"

    def _repr_json_(self) -> Any:
        return {"a": [1, 2]}

    def _repr_markdown_(self) -> None:
        return None  # "no markdown for this one"

    def _repr_svg_(self) -> str:
        raise ValueError("broken formatter")


def test_prints_result_and_events_in_order(rec: Recorder) -> None:
    out = rec.run(0, "x = 20\nprint('hello', x)\nx * 2 + 2")
    assert rec.types() == ["cell.started", "process.stdout", "output.display", "cell.finished"]
    assert rec.events[0]["data"] == {
        "cell": 0,
        "code": "x = 20\nprint('hello', x)\nx * 2 + 2",
        "language": "python",
    }
    assert rec.events[1]["data"] == {"process_id": "kernel", "cell": 0, "text": "hello 20\n"}
    display = rec.events[2]["data"]
    assert display == {
        "cell": 0,
        "output_type": "execute_result",
        "data": {"text/plain": "42"},
        "metadata": {},
        "execution_count": 1,
        "display_id": None,
    }
    finished = rec.events[3]["data"]
    assert finished["status"] == "ok" and finished["execution_count"] == 1
    assert isinstance(finished["duration_ms"], int)
    assert out["output"] == {"text/plain": "42"} and out["error"] is None


def test_state_persists_and_count_increments(rec: Recorder) -> None:
    rec.run(0, "y = 5")
    out = rec.run(1, "y + 1")
    assert out["output"] == {"text/plain": "6"} and out["execution_count"] == 2
    assert rec.run(2, "_")["output"] == {"text/plain": "6"}


def test_none_and_semicolon_give_no_result(rec: Recorder) -> None:
    for code in ("None", "print('a')", "1 + 1;", "1 + 1;  # comment\n", "def f():\n    return 1"):
        out = rec.run(0, code)
        assert out["output"] is None, code
        assert "output.display" not in rec.types(), code


def test_display_protocol_bundle(rec: Recorder) -> None:
    rec.kernel.namespace["Rich"] = Rich
    out = rec.run(0, "print('before')\ndisplay(Rich())\nRich()")
    assert rec.types() == [
        "cell.started",
        "process.stdout",
        "output.display",
        "output.display",
        "cell.finished",
    ]
    shown, result = rec.events[2]["data"], rec.events[3]["data"]
    assert shown["output_type"] == "display_data" and shown["execution_count"] is None
    assert shown["data"] == {
        "text/plain": "Rich()",
        "text/html": "<b>rich</b>",
        "image/png": base64.b64encode(b"\x89PNG fake").decode(),
        "application/json": {"a": [1, 2]},
    }
    assert result["output_type"] == "execute_result" and result["data"] == shown["data"]
    assert out["output"] == shown["data"]


def test_mimebundle_and_metadata(rec: Recorder) -> None:
    code = (
        "class B:\n"
        "    def _repr_mimebundle_(self, include=None, exclude=None):\n"
        "        return {'text/plain': 'bee', 'text/html': '<i>b</i>'}, {'isolated': True}\n"
        "    def _repr_html_(self):\n"
        "        return 'ignored: the bundle has text/html'\n"
        "display(B(), metadata={'extra': 1})\n"
        "display({'text/plain': 'raw'}, raw=True)\n"
        "display(B)"  # a class shows its repr only
    )
    rec.run(0, code)
    shown = [e["data"] for e in rec.events if e["type"] == "output.display"]
    assert shown[0]["data"] == {"text/plain": "bee", "text/html": "<i>b</i>"}
    assert shown[0]["metadata"] == {"isolated": True, "extra": 1}
    assert shown[1]["data"] == {"text/plain": "raw"}
    assert shown[2]["data"] == {"text/plain": "<class '__main__.B'>"}


def test_error_traceback_and_status(rec: Recorder) -> None:
    out = rec.run(3, "print('partial')\ndef f():\n    return undefined_name\nf()")
    assert rec.types() == ["cell.started", "process.stdout", "output.error", "cell.finished"]
    err = rec.events[2]["data"]
    assert err["cell"] == 3 and err["ename"] == "NameError"
    assert err["evalue"] == "name 'undefined_name' is not defined"
    text = "\n".join(err["traceback"])
    assert "<cell-1>" in text and "return undefined_name" in text  # the cell's source line
    assert "pyodide_kernel" not in text  # the kernel's frames are left out
    assert rec.events[3]["data"]["status"] == "error"
    assert out["error"] == {"ename": "NameError", "evalue": err["evalue"]}


def test_syntax_error_counts_as_execution(rec: Recorder) -> None:
    out = rec.run(0, "def (")
    assert out["status"] == "error" and out["error"]["ename"] == "SyntaxError"
    assert out["execution_count"] == 1


def test_keyboard_interrupt_is_aborted(rec: Recorder) -> None:
    out = rec.run(0, "raise KeyboardInterrupt")
    assert out["status"] == "aborted" and out["error"]["ename"] == "KeyboardInterrupt"


def test_top_level_await(rec: Recorder) -> None:
    out = rec.run(0, "import asyncio\nawait asyncio.sleep(0)\nawait asyncio.sleep(0, result=7)")
    assert out["output"] == {"text/plain": "7"}


def test_streams_split_by_line_and_stderr(rec: Recorder) -> None:
    rec.run(
        0,
        "import sys\nprint('a', end='')\nprint('b')\nsys.stderr.write('oops\\n')\nprint('c', end='')",
    )
    texts = [(e["type"], e["data"]["text"]) for e in rec.events if e["type"].startswith("process.")]
    assert texts == [
        ("process.stdout", "ab\n"),
        ("process.stderr", "oops\n"),
        ("process.stdout", "c"),
    ]


def test_clear_output_and_reset(rec: Recorder) -> None:
    rec.run(0, "z = 1\nclear_output(wait=True)")
    assert {"cell": 0, "wait": True} in [
        e["data"] for e in rec.events if e["type"] == "output.clear"
    ]
    rec.kernel.reset()
    out = rec.run(0, "z")
    assert out["error"]["ename"] == "NameError" and out["execution_count"] == 1

"""runtime_client.notebook on an ipykernel in this process (no server, no sandbox): the executed
notebook keeps Jupyter's output semantics, as nbclient writes them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nbformat

from runtime_client.kernel import LocalKernel
from runtime_client.notebook import run_python_task

CELLS = [
    "from IPython.display import clear_output, display\nh = display('first', display_id='d1')",
    "h.update('second')",
    "print('a', flush=True)\nclear_output(wait=True)\nprint('b')",
    "print('x', flush=True)\nclear_output(wait=True)",
    "print('y', flush=True)\nclear_output()",
]


def test_a_notebook_written_back_has_updated_displays_and_cleared_outputs(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    (tmp_path / "nb.ipynb").write_text(nbformat.writes(notebook))
    events: list[tuple[str, dict[str, Any]]] = []

    async def run() -> dict[str, Any]:
        kernel = LocalKernel(cwd=str(tmp_path))
        try:
            return await run_python_task(
                kernel, {"notebook": "nb.ipynb"}, lambda t, d: events.append((t, d)),
                cancel=asyncio.Event(), workspace=tmp_path,
            )  # fmt: skip
        finally:
            await kernel.shutdown()

    outcome = asyncio.run(run())
    assert outcome["status"] == "succeeded", outcome
    cells = json.loads((tmp_path / "nb.ipynb").read_text())["cells"]
    outputs = [c["outputs"] for c in cells]
    # The display shown by cell 0 carries the value cell 1 updated it to.
    assert "".join(outputs[0][0]["data"]["text/plain"]) == "'second'"
    assert outputs[1] == []
    # wait=True clears when the next output arrives, and not at all if none does.
    assert [(o["name"], "".join(o["text"])) for o in outputs[2]] == [("stdout", "b\n")]
    assert [(o["name"], "".join(o["text"])) for o in outputs[3]] == [("stdout", "x\n")]
    assert outputs[4] == []
    # Clients saw every step as it happened.
    update = [d for t, d in events if t == "output.display" and d["output_type"] ==
              "update_display_data"]  # fmt: skip
    assert update[0]["display_id"] == "d1" and update[0]["data"]["text/plain"] == "'second'"
    assert [d["wait"] for t, d in events if t == "output.clear"] == [True, True, False]

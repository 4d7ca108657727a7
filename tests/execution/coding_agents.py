"""Helpers for the coding-agent architecture tests: a model reachable from a sandbox, the
"fix a failing test" workspace, and the scripted model turns each real CLI needs for it."""

from __future__ import annotations

import fcntl
import json
import socket
import struct
from pathlib import Path
from typing import Any

from sessions.runners.scripted_llm import Turn

CALC_BUGGY = "def add(a, b):\n    return a - b\n"
CALC_FIXED = "def add(a, b):\n    return a + b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
TEST_COMMAND = "python3 -m pytest -q tests"
API_KEY = "sk-test-coding-agent-9f3b2c7d1e"


def host_address() -> str:
    """A non-loopback IPv4 address of this machine. A sandbox without network reaches the
    model only through its egress proxy, which runs in the server's namespace: the scripted
    model must listen on an address that is not the sandbox's own loopback."""
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            if name == "lo":
                continue
            try:
                packed = fcntl.ioctl(sock.fileno(), siocgifaddr, struct.pack("256s", name.encode()))
            except OSError:
                continue  # no IPv4 address on this interface
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127."):
                return address
    raise AssertionError("this machine has no non-loopback IPv4 address for the model server")


def write_fix_workspace(root: Path) -> None:
    """calc.py with a bug and tests/test_calc.py that catches it."""
    (root / "tests").mkdir(parents=True, exist_ok=True)
    (root / "calc.py").write_text(CALC_BUGGY)
    (root / "tests" / "test_calc.py").write_text(TEST_CALC)


def call(name: str, **arguments: Any) -> dict[str, str]:
    return {"name": name, "arguments": json.dumps(arguments)}


ANSWER = "Fixed `add` in calc.py (it subtracted); the test passes now."


def fix_turns(
    read: dict[str, str], edit: dict[str, str], test: dict[str, str],
    extra: dict[str, str] | None = None,
) -> list[Turn]:  # fmt: skip
    """The scripted model's side of a fix, whatever the CLI's tool names: read the code,
    edit it, (optionally another tool call), run the tests, answer :data:`ANSWER` in two
    chunks; usage 1200/1300/1400/1500 prompt tokens per call."""
    turns = [
        Turn(chunks=["Let me look at the code."], tool_calls=[read],
             usage={"prompt_tokens": 1200, "completion_tokens": 20}),
        Turn(tool_calls=[edit], usage={"prompt_tokens": 1300, "completion_tokens": 30}),
    ]  # fmt: skip
    if extra:
        turns.append(Turn(tool_calls=[extra]))
    return [
        *turns,
        Turn(tool_calls=[test], usage={"prompt_tokens": 1400, "completion_tokens": 15}),
        Turn(
            chunks=[ANSWER[:23], ANSWER[23:]],
            usage={"prompt_tokens": 1500, "completion_tokens": 12},
        ),
    ]


def opencode_fix_turns(extra_bash: str | None = None) -> list[Turn]:
    """OpenCode's ``read``/``edit``/``bash`` tools with the argument shapes it declares."""
    return fix_turns(
        call("read", filePath="/workspace/calc.py"),
        call("edit", filePath="/workspace/calc.py", oldString="return a - b",
             newString="return a + b"),
        call("bash", command=TEST_COMMAND, description="Run the tests"),
        call("bash", command=extra_bash, description="probe") if extra_bash else None,
    )  # fmt: skip


CODEX_PATCH = """*** Begin Patch
*** Update File: calc.py
@@
 def add(a, b):
-    return a - b
+    return a + b
*** End Patch
"""


def codex_fix_turns() -> list[Turn]:
    """Codex's ``exec_command`` (function) and ``apply_patch`` (custom, freeform patch)."""

    def sh(cmd: str) -> dict[str, str]:
        return call("exec_command", cmd=cmd, workdir="/workspace", yield_time_ms=10000)

    return fix_turns(
        sh("cat calc.py tests/test_calc.py"),
        {"name": "apply_patch", "arguments": CODEX_PATCH},
        sh(TEST_COMMAND),
    )


def claude_code_fix_turns() -> list[Turn]:
    """Claude Code's ``Read`` (an edit needs a read first), ``Edit`` and ``Bash`` tools."""
    return fix_turns(
        call("Read", file_path="/workspace/calc.py"),
        call("Edit", file_path="/workspace/calc.py", old_string="return a - b",
             new_string="return a + b"),
        call("Bash", command=TEST_COMMAND, description="Run the tests"),
    )  # fmt: skip


def aider_fix_turns() -> list[Turn]:
    """Aider edits through a SEARCH/REPLACE block in its reply; ``--auto-test`` then runs the
    test command itself (no second model call when the tests pass)."""
    text = (
        "The bug is in `add`: it subtracts instead of adding.\n\n"
        "calc.py\n```python\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n"
        ">>>>>>> REPLACE\n```\n"
    )
    return [
        Turn(chunks=[text[:40], text[40:]], usage={"prompt_tokens": 900, "completion_tokens": 40})
    ]

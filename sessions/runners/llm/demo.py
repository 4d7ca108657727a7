"""The keyless demo model: ``spec.model.provider = "scripted"``.

Not a language model, and it says so in every reply. A :class:`ScriptedLLM` server (real HTTP,
OpenAI wire format) started once per process on loopback answers with simple rules, so the
``demo-llm`` agent shows the whole loop (token streaming, tool calls in the sandbox, tool
results, history) on a machine with no model and no key:

* ``$ <command>`` → a ``shell`` tool call; ``ls [dir]`` → ``list_files``; ``cat <path>`` →
  ``read_file``; ``ask <question>`` → ``ask_user`` (each only when the agent enables the tool);
* after a tool result → a reply quoting it;
* anything else → an echo explaining the commands above.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from sessions.runners.llm.providers import OpenAIProvider
from sessions.runners.scripted_llm import ScriptedLLM, Turn

WORD_DELAY_S = 0.03  # between streamed chunks, so the streaming is visible in a console
HELP = (
    "I am the scripted demo model: no language model is behind me, I follow fixed rules. "
    "Try `$ ls -la` to run a command in the sandbox, `ls` to list the workspace, "
    "`cat <file>` to read a file, or `ask <question>` to be asked something back."
)

_server: ScriptedLLM | None = None
_lock = threading.Lock()


def _chunks(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def _tool_names(request: dict[str, Any]) -> set[str]:
    return {t.get("function", {}).get("name", "") for t in request.get("tools") or []}


def demo_turn(request: dict[str, Any]) -> Turn:
    """The demo model's reply to one Chat Completions request body."""
    messages = request.get("messages") or [{}]
    last = messages[-1]
    usage = {"prompt_tokens": sum(len(str(m.get("content") or "")) // 4 for m in messages),
             "completion_tokens": 0}  # fmt: skip
    if last.get("role") == "tool":
        output = str(last.get("content") or "")
        text = f"(scripted demo) The tool answered:\n\n```\n{output[:2000]}\n```"
        return _reply(text, usage)
    said = str(last.get("content") or "").strip()
    tools = _tool_names(request)
    call: tuple[str, dict[str, Any]] | None = None
    if said.startswith("$ ") and "shell" in tools:
        call = ("shell", {"command": said[2:]})
    elif (said == "ls" or said.startswith("ls ")) and "list_files" in tools:
        call = ("list_files", {"path": said[3:].strip()})
    elif said.startswith("cat ") and "read_file" in tools:
        call = ("read_file", {"path": said[4:].strip()})
    elif said.startswith("ask ") and "ask_user" in tools:
        call = ("ask_user", {"question": said[4:].strip()})
    if call is not None:
        return Turn(chunks=_chunks(f"(scripted demo) Calling {call[0]}."), delay_s=WORD_DELAY_S,
                    tool_calls=[{"name": call[0], "arguments": json.dumps(call[1])}],
                    usage={**usage, "completion_tokens": 12})  # fmt: skip
    return _reply(f"(scripted demo) You said: “{said[:500]}”. {HELP}", usage)


def _reply(text: str, usage: dict[str, int]) -> Turn:
    chunks = _chunks(text)
    return Turn(chunks=chunks, delay_s=WORD_DELAY_S,
                usage={**usage, "completion_tokens": len(chunks)})  # fmt: skip


def demo_server() -> ScriptedLLM:
    """The process's demo model server (started on first use, on 127.0.0.1, a free port)."""
    global _server
    with _lock:
        if _server is None:
            _server = ScriptedLLM(model="scripted-demo", responder=demo_turn).start()
        return _server


class ScriptedDemoProvider(OpenAIProvider):
    """The ``scripted`` provider: the ``openai`` SDK against :func:`demo_server` (the spec's
    ``base_url`` and key, if any, are ignored)."""

    def __init__(self, *, base_url: str = "", api_key: str = "", max_retries: int = 0) -> None:
        super().__init__(base_url=demo_server().base_url, api_key="", max_retries=0)

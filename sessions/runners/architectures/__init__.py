"""Coding-agent architectures of the ``command`` kind (``spec.architecture``; issue 12).

``generic`` is a plain command (the spec's or the task's); the others run a coding-agent CLI,
pinned and installed by the server (``install.py``), against the agent's model endpoint, with
the task type and ``configuration`` as its prompt (``prompts.py``) and its stdout converted to
our events (``sessions.runners.transcripts``). ``run.py`` prepares one run; the ``command``
runner executes it in the session's sandbox like any command (limits, cancel, streaming).
"""

from __future__ import annotations

from sessions.runners.architectures.aider import Aider
from sessions.runners.architectures.base import Architecture
from sessions.runners.architectures.claude_code import ClaudeCode
from sessions.runners.architectures.codex import Codex
from sessions.runners.architectures.opencode import OpenCode

ARCHITECTURES: dict[str, type[Architecture]] = {
    cls.name: cls for cls in (OpenCode, Codex, ClaudeCode, Aider)
}
ARCHITECTURE_NAMES = ("generic", *ARCHITECTURES)

__all__ = ("ARCHITECTURES", "ARCHITECTURE_NAMES", "Architecture")

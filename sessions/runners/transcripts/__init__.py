"""Transcript converters: a coding-agent CLI's stdout → our events (issue 12).

``converter_for(architecture, **options)`` gives a fresh converter for one run of a ``command``
agent's ``spec.architecture``: ``opencode``, ``codex``, ``aider``, ``claude-code`` or
``generic`` (a plain command, whose stdout stays ``process.stdout``). Options:
``workspace`` (the run's working directory as the CLI sees it, default ``/workspace``),
``id_prefix`` (e.g. the task id) and, for Aider, ``test_cmd`` (its ``--test-cmd``). Interface
and event shapes: ``base.py``; each CLI's line types: its module and
``docs/dev/coding-agent-clis.md``.
"""

from __future__ import annotations

from typing import Any

from sessions.runners.transcripts.aider import AiderConverter
from sessions.runners.transcripts.base import Emit, GenericConverter, TranscriptConverter
from sessions.runners.transcripts.claude_code import ClaudeCodeConverter
from sessions.runners.transcripts.codex import CodexConverter
from sessions.runners.transcripts.opencode import OpenCodeConverter

CONVERTERS: dict[str, type[TranscriptConverter]] = {
    "opencode": OpenCodeConverter,
    "codex": CodexConverter,
    "aider": AiderConverter,
    "claude-code": ClaudeCodeConverter,
    "generic": GenericConverter,
}


def converter_for(architecture: str, **options: Any) -> TranscriptConverter:
    """A new converter for one run. Raises ValueError for an unknown architecture."""
    try:
        cls = CONVERTERS[architecture]
    except KeyError:
        known = ", ".join(sorted(CONVERTERS))
        raise ValueError(f"Unknown architecture {architecture!r} (known: {known}).") from None
    return cls(**options)


__all__ = (
    "CONVERTERS",
    "AiderConverter",
    "ClaudeCodeConverter",
    "CodexConverter",
    "Emit",
    "GenericConverter",
    "OpenCodeConverter",
    "TranscriptConverter",
    "converter_for",
)

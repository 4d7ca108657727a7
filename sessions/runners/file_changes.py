"""Files a command changed in its workspace: a snapshot before, a snapshot after, the diff.

No CLI reports every file it changes (OpenCode and Claude Code report their edit tools' files
but not what their shell commands write; Codex reports patches; plain commands report nothing:
``docs/dev/coding-agent-clis.md``), so the ``command`` runner compares the workspace before and
after a run and emits ``file.changed`` ``{"path", "change": "created"|"modified"|"deleted"}``
(the shape ``runtime_client.notebook`` and the transcript converters use) for every file the
transcript did not already report. A file counts as modified when its size or modification time
changed. Symlinks are compared as entries, never followed. ``.agent/`` (the task files, the
CLIs' private HOME, raw transcripts) is left out, and so are caches a run rewrites as a side
effect (``__pycache__``, ``.pytest_cache``, ``.git``…: :data:`NOISE`). Bounded: at most
:data:`MAX_ENTRIES` entries are looked at (past that it reports what it saw, ``truncated``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sandboxes import paths

MAX_ENTRIES = 20_000
EXCLUDED = (".agent",)  # top-level: the task files, the CLIs' HOME, raw transcripts
# At any depth: caches and VCS internals a run rewrites as a side effect (pytest, mypy, git).
NOISE = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git"})


@dataclass(frozen=True)
class Snapshot:
    """``{path: (type, size in bytes, mtime in s)}`` of a workspace's files and symlinks."""

    entries: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    truncated: bool = False


def snapshot(root: Path) -> Snapshot:
    """The workspace's files now (an empty snapshot when it does not exist yet)."""
    if not root.is_dir():
        return Snapshot()
    out: dict[str, tuple[str, int, float]] = {}
    truncated = False
    for entry in paths.list_dir(root, "", recursive=True, limit=MAX_ENTRIES + 1):
        parts = entry.path.split("/")
        if parts[0] in EXCLUDED or entry.type == "directory" or NOISE.intersection(parts):
            continue
        if len(out) >= MAX_ENTRIES:
            truncated = True
            break
        out[entry.path] = (entry.type, entry.size, entry.modified)
    return Snapshot(out, truncated)


def diff(before: Snapshot, after: Snapshot) -> list[tuple[str, str]]:
    """``[(path, "created"|"modified"|"deleted")]`` sorted by path."""
    changes = []
    for path, facts in after.entries.items():
        old = before.entries.get(path)
        if old is None:
            changes.append((path, "created"))
        elif old != facts:
            changes.append((path, "modified"))
    if not (before.truncated or after.truncated):  # unseen is not deleted
        changes += [(p, "deleted") for p in before.entries if p not in after.entries]
    return sorted(changes)

"""Settings-time helpers for the ``local`` sandbox backend (safe to import from settings.py).

This module imports nothing from Django, so ``runtime_project/settings.py`` can call
:func:`default_data_dir` while settings are still being built.

Why a data dir can be "unsafe": when the server runs as root, the ``local`` backend drops to an
unprivileged uid (``SANDBOX_UID``, default 65534) *before* starting bubblewrap, so bwrap itself
runs as that uid and must be able to traverse every ancestor of the workspace it binds. A
checkout under ``/root`` (mode 0700) is not traversable by uid 65534, so workspaces there would
fail with "Can't find source path … Permission denied".
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

SYSTEM_DATA_DIR = Path("/var/lib/agent-runtime")
"""Fallback data directory used when the project directory is not traversable by others."""


def traversable_by_others(path: Path) -> bool:
    """True when ``path`` and every ancestor directory grant search (``x``) to "others".

    Missing trailing components are ignored (they will be created later with mode 0o755). This
    is a plain mode-bit check: it ignores ACLs and group membership, so it can only err on the
    side of "not traversable".
    """
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    for directory in (current, *current.parents):
        try:
            mode = directory.stat().st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return True


def default_data_dir(base_dir: Path) -> Path:
    """Return the default ``SANDBOX_DATA_DIR`` for a project at ``base_dir``.

    Workspaces live at ``SANDBOX_DATA_DIR/workspaces/<session id>``.

    * Not root: ``base_dir / "var"`` (the sandbox runs as the server's own uid, which can
      obviously reach it).
    * Root, and ``base_dir`` plus all its ancestors are traversable by others: ``base_dir/"var"``.
    * Root otherwise (e.g. the repo lives under ``/root``): :data:`SYSTEM_DATA_DIR`
      (``/var/lib/agent-runtime``), created with mode 0o755 if missing.
    """
    if os.geteuid() != 0 or traversable_by_others(base_dir):
        return base_dir / "var"
    SYSTEM_DATA_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for an existing dir: enforce it.
    SYSTEM_DATA_DIR.chmod(SYSTEM_DATA_DIR.stat().st_mode | 0o755)
    return SYSTEM_DATA_DIR

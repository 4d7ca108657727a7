"""Every API test gets its own empty workspace and media directories.

This is not in ``tests/conftest.py`` on purpose: the execution and transport tests run real
sandboxes and a daphne subprocess that need the configured ``WORKSPACE_ROOT``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _tmp_storage(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.WORKSPACE_ROOT = tmp_path / "workspaces"
    settings.WORKSPACE_ROOT.mkdir()

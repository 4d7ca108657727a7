"""A task's ``config.debug``: whether it is a debug run and how its pauses behave."""

from __future__ import annotations

from typing import Any


def debug_config_validate(config: dict[str, Any]) -> None:
    """Placeholder until debug runs land."""
    return None

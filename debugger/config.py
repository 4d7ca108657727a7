"""A task's ``config.debug``: whether it is a debug run and how its pauses behave (issue 10).

``config.debug`` is ``true``/``false`` or an object::

    {"enabled"?: true,
     "breakpoints"?: [{"step_kind"?: "component"|"llm"|"tool"|"cell"|"command", "name"?: str}],
     "pause_timeout_s"?: 600,             # seconds an unattended pause lasts
     "on_pause_timeout"?: "continue"|"abort"}

A debug run honours breakpoints (those of its agent, of the task, and these), pauses when
stepping, and records the full input of every step (the llm kind's whole prompt). Defaults
come from ``DEBUG_PAUSE_TIMEOUT_S`` and ``DEBUG_PAUSE_TIMEOUT_ACTION``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

STEP_KINDS = ("component", "llm", "tool", "cell", "command")
PAUSE_TIMEOUT_ACTIONS = ("continue", "abort")
BREAKPOINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "step_kind": {"enum": ["", *STEP_KINDS]},
        "name": {"type": "string", "maxLength": 255},
    },
    "additionalProperties": False,
}
DEBUG_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "boolean"},
        {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean"},
                "breakpoints": {"type": "array", "items": BREAKPOINT_SCHEMA, "maxItems": 100},
                "pause_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                "on_pause_timeout": {"enum": list(PAUSE_TIMEOUT_ACTIONS)},
            },
            "additionalProperties": False,
        },
    ]
}


@dataclass(frozen=True)
class DebugSettings:
    """``config.debug`` read with the server defaults. ``pause_timeout_s`` is seconds."""

    enabled: bool
    pause_timeout_s: float
    on_pause_timeout: str
    breakpoints: tuple[dict[str, str], ...] = field(default=())


def debug_config_validate(config: dict[str, Any]) -> None:
    """Raise ``InvalidInput`` (400, ``details.fields["config.debug"]``) for a malformed
    ``config.debug``; a config without it passes."""
    from sessions.runners.base import validate_schema

    if "debug" in config:
        validate_schema(config["debug"], DEBUG_SCHEMA, "config.debug")


def debug_settings(config: dict[str, Any]) -> DebugSettings:
    """The :class:`DebugSettings` of a task's (validated) ``config``."""
    raw = config.get("debug", False)
    options: dict[str, Any] = raw if isinstance(raw, dict) else {}
    enabled = bool(options.get("enabled", True)) if isinstance(raw, dict) else raw is True
    return DebugSettings(
        enabled=enabled,
        pause_timeout_s=float(options.get("pause_timeout_s", settings.DEBUG_PAUSE_TIMEOUT_S)),
        on_pause_timeout=str(options.get("on_pause_timeout", settings.DEBUG_PAUSE_TIMEOUT_ACTION)),
        breakpoints=tuple(
            {"step_kind": b.get("step_kind", ""), "name": b.get("name", "")}
            for b in options.get("breakpoints", [])
        ),
    )

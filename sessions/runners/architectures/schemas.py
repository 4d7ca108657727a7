"""JSON Schemas of the architecture keys of a ``command`` agent spec and of a task's
``configuration`` (``sessions.runners.command`` validates with them)."""

from __future__ import annotations

from typing import Any

# The model a coding-agent CLI talks to: the llm kind's model, minus its in-process demo.
CLI_MODEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "provider": {"enum": ["openai", "anthropic"]},
        "base_url": {"type": "string", "pattern": "^https?://"},
        "name": {"type": "string", "minLength": 1},
        "api_key_env": {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$"},
        "credential": {"type": "string", "minLength": 1},
    },
    "required": ["name", "base_url"],
    "additionalProperties": False,
}
ARCHITECTURE_OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "extra_args": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
        "context_tokens": {"type": "integer", "minimum": 1024},
        "output_tokens": {"type": "integer", "minimum": 256},
        "max_retries": {"type": "integer", "minimum": 0, "maximum": 10},
        "edit_format": {"enum": ["diff", "whole", "udiff", "diff-fenced"]},
        "map_tokens": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}
# A task's configuration for a coding-agent CLI (architectures/prompts.py).
CONFIGURATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "instructions": {"type": "string", "maxLength": 100_000},
        "app_url": {"type": "string", "pattern": "^https?://", "maxLength": 2000},
        "specs": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 50},
        "files": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 200},
        "test_command": {"type": "string", "minLength": 1, "maxLength": 2000},
    },
    "additionalProperties": False,
}

"""The configured model catalogue, ``settings.LLM_MODELS`` (env ``LLM_MODELS``, JSON).

Shape: a list of ``{"id": str, "provider": "openai"|"anthropic", "base_url"?: str,
"pricing"?: {"prompt_per_mtok": number, "completion_per_mtok": number}}`` (prices in USD per
million tokens). ``GET /api/v1/models`` lists these entries (never their ``base_url``) next to
the models of the agents a caller can use.

Imports nothing from the project: ``settings.py`` parses the environment with it.
"""

from __future__ import annotations

import json
import math
from typing import Any

PROVIDERS = ("openai", "anthropic")
PRICE_KEYS = ("prompt_per_mtok", "completion_per_mtok")
_ENTRY_KEYS = {"id", "provider", "base_url", "pricing"}


class CatalogueError(ValueError):
    """``LLM_MODELS`` is malformed (the message says where, never a ``base_url``)."""


def _price(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CatalogueError(f"{where} must be a number")
    if value < 0:
        raise CatalogueError(f"{where} must be ≥ 0")
    return float(value)


def _entry(raw: Any, index: int) -> dict[str, Any]:
    where = f"entry {index}"
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where} must be an object")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise CatalogueError(f"{where} has unknown keys {sorted(unknown)}")
    if not isinstance(raw.get("id"), str) or not raw["id"].strip():
        raise CatalogueError(f"{where} needs an 'id' (a non-empty string)")
    provider = raw.get("provider", "openai")
    if provider not in PROVIDERS:
        raise CatalogueError(f"{where}: 'provider' must be one of {list(PROVIDERS)}")
    entry: dict[str, Any] = {"id": raw["id"].strip(), "provider": provider}
    if "base_url" in raw:
        if not isinstance(raw["base_url"], str) or not raw["base_url"].startswith(
            ("http://", "https://")
        ):
            raise CatalogueError(f"{where}: 'base_url' must be an http(s) URL")
        entry["base_url"] = raw["base_url"]
    if "pricing" in raw:
        pricing = raw["pricing"]
        if not isinstance(pricing, dict) or set(pricing) != set(PRICE_KEYS):
            raise CatalogueError(f"{where}: 'pricing' must have exactly {list(PRICE_KEYS)}")
        entry["pricing"] = {k: _price(pricing[k], f"{where}: pricing.{k}") for k in PRICE_KEYS}
    return entry


def parse_llm_models(raw: str) -> list[dict[str, Any]]:
    """Parse and check the ``LLM_MODELS`` JSON (``""`` is an empty catalogue).

    Returns:
        The entries, normalised (``provider`` defaulted to ``openai``, prices as floats).

    Raises:
        CatalogueError: (a ``ValueError``) not JSON, not a list, a malformed entry, or a
            duplicate ``id``. The message names the entry, never a ``base_url``.
    """
    if not raw.strip():
        return []
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise CatalogueError("not valid JSON") from None
    return check_llm_models(data)


def check_llm_models(data: Any) -> list[dict[str, Any]]:
    """:func:`parse_llm_models` for an already decoded value (e.g. set from Python)."""
    if not isinstance(data, list):
        raise CatalogueError("must be a JSON list of model objects")
    entries = [_entry(item, index) for index, item in enumerate(data)]
    ids = [e["id"] for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CatalogueError(f"duplicate ids {duplicates}")
    return entries

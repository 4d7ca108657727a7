"""From an Alexa intent to a task input (``AlexaSkill.slot_mapping``).

Shape (every key optional)::

    {
      "intents": {
        "GetWeather": {
          "slots": {"city": "location", "day": null},   # slot -> input key (null: dropped)
          "input": {"args": ["{location}"]}             # this intent's template
        }
      },
      "input": {"message": "{query}"}                    # template of the other intents
    }

1. Each slot the user filled becomes the input key of the same name, unless the intent's
   ``slots`` maps it to another key (or to ``null``, which drops it). A slot's value is its
   entity-resolution match (the canonical value of a custom slot type) when Alexa found one,
   else the words Alexa heard.
2. Without a template the input is that mapping. With one (the intent's ``input``, else the
   top-level ``input``) the input is the template with placeholders filled: ``{key}`` names an
   input key of step 1, or ``intent`` (the intent's name) or ``locale`` (``en-US``...). A
   placeholder inside a longer string is replaced by the value (``""`` when missing); a string
   that is exactly one placeholder whose value is missing is left out of its object or list,
   so an optional slot the user did not fill does not send an empty string.
"""

from __future__ import annotations

import re
from typing import Any

from sessions.runners.base import validate_schema

_KEY = {"type": "string", "minLength": 1, "maxLength": 200}
SLOT_MAPPING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "intents": {
            "type": "object",
            "propertyNames": {"minLength": 1, "maxLength": 200},
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "slots": {
                        "type": "object",
                        "additionalProperties": {"oneOf": [_KEY, {"type": "null"}]},
                    },
                    "input": {"type": "object"},
                },
                "additionalProperties": False,
            },
        },
        "input": {"type": "object"},
    },
    "additionalProperties": False,
}

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.-]+)\}")
_MISSING = object()


def check_slot_mapping(mapping: Any) -> dict[str, Any]:
    """``mapping`` if it has the shape above (``None`` counts as ``{}``).

    Raises:
        InvalidInput: under ``details.fields.slot_mapping``.
    """
    mapping = {} if mapping is None else mapping
    validate_schema(mapping, SLOT_MAPPING_SCHEMA, "slot_mapping")
    return dict(mapping)


def slot_values(slots: dict[str, Any] | None) -> dict[str, str]:
    """``{slot name: value}`` of the slots the user filled, from the request's
    ``request.intent.slots`` (``ask_sdk_model`` ``Slot`` objects or plain dicts)."""
    values: dict[str, str] = {}
    for name, slot in (slots or {}).items():
        value = _resolved(slot)
        if value is None:
            value = _get(slot, "value")
        if isinstance(value, str) and value.strip():
            values[str(name)] = value.strip()
    return values


def input_for_intent(
    mapping: dict[str, Any], *, intent: str, slots: dict[str, str], locale: str = ""
) -> dict[str, Any]:
    """The task input for ``intent`` with the filled ``slots`` (see the module docstring)."""
    config = (mapping.get("intents") or {}).get(intent) or {}
    renames = config.get("slots") or {}
    mapped: dict[str, Any] = {}
    for slot, value in slots.items():
        key = renames.get(slot, slot)
        if key:
            mapped[key] = value
    template = config.get("input", mapping.get("input"))
    if template is None:
        return mapped
    variables = {**mapped, "intent": intent, "locale": locale}
    rendered = _render(template, variables)
    return rendered if isinstance(rendered, dict) else {}


def _render(value: Any, variables: dict[str, Any]) -> Any:
    """``value`` with its placeholders filled; :data:`_MISSING` for a lone placeholder of a
    missing variable (its container leaves it out)."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return variables.get(whole.group(1), _MISSING)
        return _PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1), "")), value)
    if isinstance(value, dict):
        out = {key: _render(item, variables) for key, item in value.items()}
        return {key: item for key, item in out.items() if item is not _MISSING}
    if isinstance(value, list):
        return [item for item in (_render(v, variables) for v in value) if item is not _MISSING]
    return value


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _resolved(slot: Any) -> str | None:
    """The first entity-resolution match of ``slot`` (``ER_SUCCESS_MATCH``), if any."""
    resolutions = _get(slot, "resolutions")
    for authority in _get(resolutions, "resolutions_per_authority") or (
        _get(resolutions, "resolutionsPerAuthority") or []
    ):
        status = _get(_get(authority, "status"), "code")
        code = getattr(status, "value", status)
        if code != "ER_SUCCESS_MATCH":
            continue
        for entry in _get(authority, "values") or []:
            name = _get(_get(entry, "value"), "name")
            if isinstance(name, str) and name:
                return name
    return None

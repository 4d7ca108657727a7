"""Example values from OpenAPI 3.0/3.1 schemas, for the request bodies, parameters and response
examples of a Postman collection (``integrations.postman.convert``).

An example is what a person would edit before sending: the schema's own ``example`` (or 3.1
``examples``), else its ``default``, ``const`` or first ``enum`` value, else a placeholder of the
right type (``"string"``, ``0``, ``true``, a UUID or a timestamp by ``format``). Request objects
hold their required properties and the optional ones with an example or a default, so the
example can be sent as is (``readOnly`` properties are left out); response objects hold every
property but the ``writeOnly`` ones. Local ``$ref``s (``#/components/...``) are followed; a
recursive schema stops at its first repetition.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

Direction = Literal["request", "response"]

MAX_DEPTH = 12  # nesting levels before giving up: deeper examples only make bodies unreadable

# Placeholders by string ``format``: values a server accepts where the format is checked.
FORMAT_EXAMPLES: dict[str, str] = {
    "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "byte": "U3dhZ2dlciByb2Nrcw==",
    "binary": "",
    "password": "********",
}


class Document:
    """An OpenAPI document whose local ``$ref``s can be followed."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, node: Any) -> Any:
        """``node`` with its ``$ref`` chain followed (a JSON pointer into this document).

        An external or dangling reference resolves to ``{}`` (any value): a converter must not
        fail on a document another tool accepted.
        """
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen:
                return {}
            seen.add(ref)
            node = self.pointer(ref)
        return node

    def pointer(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            return {}
        node: Any = self.document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node

    def example(self, schema: Any, direction: Direction = "request") -> Any:
        """An example value for ``schema`` (``None`` when it allows anything)."""
        return _Builder(self, direction).build(schema, 0, frozenset())

    def given(self, schema: Any) -> Any:
        """The value ``schema`` itself names (example, default, const, first enum value; through
        ``$ref`` and single-part ``allOf``), or ``None``."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return None
        found, value = _given(schema)
        if found:
            return copy.deepcopy(value)
        parts = schema.get("allOf") or []
        return self.given(parts[0]) if len(parts) == 1 else None

    def properties(self, schema: Any) -> tuple[dict[str, Any], set[str]]:
        """The properties and required names of an object schema, ``allOf`` parts merged
        (used for form bodies, whose fields are listed one by one)."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return {}, set()
        props: dict[str, Any] = {}
        required: set[str] = set(schema.get("required") or [])
        for part in schema.get("allOf") or []:
            sub_props, sub_required = self.properties(part)
            props.update(sub_props)
            required |= sub_required
        props.update({k: self.resolve(v) for k, v in (schema.get("properties") or {}).items()})
        return props, required


class _Builder:
    def __init__(self, document: Document, direction: Direction) -> None:
        self.doc = document
        self.direction = direction

    def build(self, schema: Any, depth: int, refs: frozenset[str]) -> Any:
        if not isinstance(schema, dict) or depth > MAX_DEPTH:
            return None
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in refs:  # recursive schema: stop here rather than loop
                return None
            return self.build(self.doc.pointer(ref), depth + 1, refs | {ref})
        found, value = _given(schema)
        if found:
            return copy.deepcopy(value)
        if schema.get("allOf"):
            return self._all_of(schema, depth, refs)
        for key in ("oneOf", "anyOf"):
            options = [s for s in schema.get(key) or [] if not _is_null(self.doc.resolve(s))]
            if options:
                return self.build(options[0], depth + 1, refs)
        kind = _type(schema)
        if kind == "object":
            return self._object(schema, depth, refs)
        if kind == "array":
            item = self.build(schema.get("items"), depth + 1, refs)
            return (
                []
                if item is None or item == {}
                else [item] * max(1, min(int(schema.get("minItems") or 1), 3))
            )
        if kind == "string":
            return _string(schema)
        if kind in ("integer", "number"):
            return _number(schema, kind)
        if kind == "boolean":
            return True
        return None

    def _all_of(self, schema: dict[str, Any], depth: int, refs: frozenset[str]) -> Any:
        # drf-spectacular wraps enums and nested serializers as ``allOf: [{$ref}]`` next to
        # ``default``/``description``; several object parts are merged property by property.
        parts = [self.build(part, depth + 1, refs) for part in schema["allOf"]]
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        if _type(rest) == "object" or rest.get("properties"):
            parts.append(self._object(rest, depth, refs))
        objects = [p for p in parts if isinstance(p, dict)]
        if objects and len(objects) == len([p for p in parts if p is not None]):
            merged: dict[str, Any] = {}
            for part in objects:
                merged.update(part)
            return merged
        return next((p for p in parts if p is not None), None)

    def _object(self, schema: dict[str, Any], depth: int, refs: frozenset[str]) -> Any:
        skip = "readOnly" if self.direction == "request" else "writeOnly"
        result: dict[str, Any] = {}
        required = set(schema.get("required") or [])
        for name, prop in (schema.get("properties") or {}).items():
            resolved = self.doc.resolve(prop)
            if _flag(prop, skip) or _flag(resolved, skip):
                continue
            if (
                self.direction == "request"
                and name not in required
                and not (_own_value(prop) or _own_value(resolved))
            ):
                # An optional field with no value of its own stays out: a placeholder such as
                # "string" would make the request fail (an unknown team, say) when sent as is.
                continue
            result[name] = self.build(prop, depth + 1, refs)
        extra = schema.get("additionalProperties")
        if not result and isinstance(extra, dict) and extra:
            value = self.build(extra, depth + 1, refs)
            if value is not None:
                result["key"] = value
        return result


def _given(schema: dict[str, Any]) -> tuple[bool, Any]:
    """The value the schema itself names: example, examples[0], default, const, enum[0]."""
    if "example" in schema:
        return True, schema["example"]
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return True, examples[0]
    for key in ("default", "const"):
        if key in schema:
            return True, schema[key]
    enum = [v for v in schema.get("enum") or [] if v is not None]
    if enum:
        return True, enum[0]
    return False, None


def _own_value(schema: Any) -> bool:
    """The schema names a value of its own (an enum's first value is a choice, not one)."""
    return isinstance(schema, dict) and any(
        k in schema for k in ("example", "examples", "default", "const")
    )


def _type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):  # OpenAPI 3.1: ["string", "null"]
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema:
            return "array"
    return kind if isinstance(kind, str) else None


def _flag(schema: Any, key: str) -> bool:
    return isinstance(schema, dict) and bool(schema.get(key))


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and (
        schema.get("type") == "null" or schema.get("enum") == [None]
    )


def _string(schema: dict[str, Any]) -> str:
    value = FORMAT_EXAMPLES.get(str(schema.get("format", "")), "string")
    min_length = int(schema.get("minLength") or 0)
    max_length = schema.get("maxLength")
    if len(value) < min_length:
        value = value + "x" * (min_length - len(value))
    if isinstance(max_length, int) and len(value) > max_length:
        value = value[:max_length]
    return value


def _number(schema: dict[str, Any], kind: str) -> int | float:
    low = schema.get("minimum")
    if low is None and isinstance(schema.get("exclusiveMinimum"), (int, float)):
        low = schema["exclusiveMinimum"] + 1
    high = schema.get("maximum")
    value: int | float = low if low is not None else 0
    if low is None and isinstance(high, (int, float)) and high < 0:
        value = high
    return int(value) if kind == "integer" else value


def text(value: Any) -> str:
    """A parameter or form value as Postman stores it: a string (JSON for non-strings)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)

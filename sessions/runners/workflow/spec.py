"""The ``workflow`` spec: its JSON Schema and the graph check, with field-precise errors.

Every problem is reported under ``details.fields`` keyed by where it is, e.g.
``spec.components[2].url`` or ``spec.edges[3].to``, the value a list of messages; all problems
are reported at once (at most :data:`MAX_ERRORS`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import jsonschema

from runtime_project.exceptions import InvalidInput
from sessions.runners.secrets import SECRETS_SPEC_SCHEMA
from sessions.runners.workflow import expr

MAX_ERRORS = 50
NAME = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
_NAME_RE = re.compile(NAME)
# {{name}} or {{name.key.key}}; {{inputs}} is every input as JSON.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_-]*)((?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
ALL_INPUTS = "inputs"

MODEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "provider": {"enum": ["openai", "anthropic", "scripted"]},
        "base_url": {"type": "string", "pattern": "^https?://"},
        "name": {"type": "string", "minLength": 1},
        "api_key_env": {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$"},
        "credential": {"type": "string", "minLength": 1},
    },
    "required": ["name"],
    "if": {"properties": {"provider": {"const": "scripted"}}, "required": ["provider"]},
    "else": {"required": ["base_url"]},
    "additionalProperties": False,
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_TIMEOUT = {"type": "number", "exclusiveMinimum": 0, "maximum": 3600}
_BASE = {
    "id": {"type": "string"},
    "type": {"type": "string"},
    "name": {"type": "string"},
    "description": {"type": "string"},
}


def _component(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**_BASE, **properties},
        "required": required,
        "additionalProperties": False,
    }


GRAPH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "components": {
            "type": "array",
            "minItems": 1,
            "maxItems": 200,
            "items": {
                "type": "object",
                "required": ["id", "type"],
                "properties": {
                    "id": {"type": "string", "pattern": NAME},
                    "type": {"type": "string"},
                },
            },
        },
        "edges": {
            "type": "array",
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["from", "to"],
                "additionalProperties": False,
                "properties": {
                    "from": {"type": "string", "minLength": 1},
                    "to": {"type": "string", "minLength": 1},
                },
            },
        },
    },
    "required": ["components"],
}

COMPONENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "input": _component([]),
    "output": _component([]),
    "llm_prompt": _component(
        ["prompt"],
        prompt={"type": "string", "minLength": 1},
        system={"type": "string"},
        model=MODEL_SCHEMA,
        temperature={"type": "number", "minimum": 0, "maximum": 2},
        max_tokens={"type": "integer", "minimum": 1},
        json={"type": "boolean"},
    ),
    "code": _component(
        ["source"],
        language={"enum": ["python", "shell"]},
        source={"type": "string", "minLength": 1},
        timeout_s=_TIMEOUT,
        env=_STRING_MAP,
        output_file={"type": "string", "minLength": 1},
    ),
    "http_request": _component(
        ["url"],
        method={"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]},
        url={"type": "string", "minLength": 1},
        headers=_STRING_MAP,
        body={"type": ["string", "object", "array"]},
        timeout_s=_TIMEOUT,
        max_bytes={"type": "integer", "minimum": 1, "maximum": 10_000_000},
        fail_on_status={"type": "boolean"},
        # An OAuth connection of the task's user (integrations/connections): adds its bearer.
        connection={"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
    ),
    "condition": _component(["expression"], expression={"type": "string", "minLength": 1}),
    "loop": _component(
        [],
        body=GRAPH_SCHEMA,
        component={"type": "object", "required": ["type"]},
        max_items={"type": "integer", "minimum": 1, "maximum": 10_000},
        concurrency={"type": "integer", "minimum": 1, "maximum": 16},
    ),
    "agent_call": _component(["agent"], agent={"type": "string", "minLength": 1}),
    # A ``custom`` event for the client (LangGraph's get_stream_writer): an object whose
    # strings are templates, or one placeholder that holds an object.
    "emit": _component(["data"], data={"type": ["object", "string"]}),
}
TYPES = tuple(COMPONENT_SCHEMAS)

# Named outputs an edge may take (``<id>.<output>``); None: any key of the output object.
OUTPUTS: dict[str, frozenset[str] | None] = {
    "input": None,
    "code": None,
    "llm_prompt": frozenset({"text", "json"}),
    "http_request": frozenset({"status", "headers", "body", "json"}),
    "condition": frozenset({"true", "false", "result", "value"}),
    "loop": frozenset({"results"}),
    "agent_call": frozenset({"task_id", "status", "result", "error"}),
    "emit": None,
    "output": frozenset(),
}

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **GRAPH_SCHEMA["properties"],
        "model": MODEL_SCHEMA,
        "secrets": SECRETS_SPEC_SCHEMA,
        "retry_safe": {"type": "boolean"},
        "description": {"type": "string"},
    },
    "required": ["components"],
    "additionalProperties": False,
}


class Problems:
    """Field-keyed error messages, raised together as one InvalidInput."""

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = defaultdict(list)

    def add(self, where: str, message: str) -> None:
        if sum(map(len, self.fields.values())) < MAX_ERRORS:
            self.fields[where].append(message)

    def schema(self, data: Any, schema: dict[str, Any], prefix: str) -> bool:
        """Add ``data``'s violations of ``schema``; True when there were none."""
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
        for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
            where, message = prefix + _path(error.absolute_path), error.message
            if error.validator == "required" and isinstance(error.instance, dict):
                missing = [p for p in error.validator_value if p not in error.instance]
                where += "".join(f".{p}" for p in missing[:1])
            elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
                known = error.schema.get("properties", {})
                extra = sorted(k for k in error.instance if k not in known)
                where += "".join(f".{p}" for p in extra[:1])
            self.add(where, message)
        return not errors

    def raise_if_any(self) -> None:
        if self.fields:
            raise InvalidInput("The workflow spec is invalid.", details={"fields": self.fields})


def _path(parts: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def validate(spec: dict[str, Any]) -> None:
    """Check a workflow spec; raises InvalidInput with every problem, keyed by field."""
    problems = Problems()
    if problems.schema(spec, SPEC_SCHEMA, "spec"):
        check_graph(spec, "spec", problems, has_model="model" in spec)
    problems.raise_if_any()


def placeholders(text: str) -> set[str]:
    """The input names a template reads (``{{inputs}}`` excluded)."""
    return {m.group(1) for m in PLACEHOLDER.finditer(text)} - {ALL_INPUTS}


def _json_placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return placeholders(value)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return set().union(*map(_json_placeholders, items))


def required_inputs(component: dict[str, Any]) -> dict[str, str]:
    """``{input name: the config field that needs it}`` of a component."""
    kind, needed = component["type"], {}
    if kind == "llm_prompt":
        for field in ("system", "prompt"):
            needed.update(dict.fromkeys(placeholders(component.get(field, "")), field))
    elif kind == "http_request":
        needed.update(dict.fromkeys(placeholders(component["url"]), "url"))
        for name, value in (component.get("headers") or {}).items():
            needed.update(dict.fromkeys(placeholders(value), f"headers.{name}"))
        body = component.get("body")
        if isinstance(body, str):
            needed.update(dict.fromkeys(placeholders(body), "body"))
    elif kind == "condition":
        try:
            needed.update(
                dict.fromkeys(expr.names(expr.parse(component["expression"])), "expression")
            )
        except expr.ExpressionError:
            pass  # reported by check_component
    elif kind == "loop":
        needed["items"] = "items"
    elif kind == "emit":
        needed.update(dict.fromkeys(_json_placeholders(component["data"]), "data"))
    return needed


def check_component(
    component: dict[str, Any], where: str, problems: Problems, has_model: bool
) -> bool:
    """The type's schema and its own rules (expression syntax, a model, a loop body); False
    when its config is unusable (the graph check then skips its required inputs)."""
    kind = component["type"]
    if kind not in COMPONENT_SCHEMAS:
        problems.add(f"{where}.type", f"unknown component type {kind!r}; known: {', '.join(TYPES)}")
        return False
    if not problems.schema(component, COMPONENT_SCHEMAS[kind], where):
        return False
    if kind == "condition":
        try:
            expr.parse(component["expression"])
        except expr.ExpressionError as exc:
            problems.add(f"{where}.expression", str(exc))
            return False
    elif kind == "llm_prompt" and not has_model and "model" not in component:
        problems.add(f"{where}.model", "an llm_prompt needs a model (here or in spec.model)")
    elif kind == "loop":
        if ("body" in component) == ("component" in component):
            problems.add(where, "a loop needs either a body (a sub-graph) or a component")
        elif "body" in component:
            check_graph(component["body"], f"{where}.body", problems, has_model)
        else:
            inner = {"id": component["id"], **component["component"]}
            if inner["type"] in ("input", "output", "loop"):
                problems.add(
                    f"{where}.component.type",
                    f"a loop cannot run a single {inner['type']} component",
                )
            else:
                check_component(inner, f"{where}.component", problems, has_model)
    return True


def check_graph(graph: dict[str, Any], prefix: str, problems: Problems, has_model: bool) -> None:
    """Duplicate ids, unknown types, edges to unknown components or inputs, missing required
    inputs, the input/output components, cycles; recursing into loop bodies."""
    by_id: dict[str, tuple[int, dict[str, Any]]] = {}
    usable: set[str] = set()
    for i, component in enumerate(graph["components"]):
        where = f"{prefix}.components[{i}]"
        if component["id"] in by_id:
            first = by_id[component["id"]][0]
            problems.add(
                f"{where}.id", f"duplicate id {component['id']!r} (also components[{first}])"
            )
            continue
        by_id[component["id"]] = (i, component)
        if check_component(component, where, problems, has_model):
            usable.add(component["id"])
    kinds = [c["type"] for c in graph["components"]]
    if kinds.count("output") != 1:
        problems.add(
            f"{prefix}.components",
            f"needs exactly one output component (found {kinds.count('output')})",
        )
    if kinds.count("input") > 1:
        problems.add(f"{prefix}.components", "has more than one input component")

    incoming: dict[str, set[str]] = defaultdict(set)
    successors: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for k, edge in enumerate(graph.get("edges", [])):
        where = f"{prefix}.edges[{k}]"
        source, _, port = edge["from"].partition(".")
        target, _, name = edge["to"].partition(".")
        source_ok = target_ok = False
        if source not in by_id:
            problems.add(f"{where}.from", f"unknown component {source!r}")
        else:
            outputs = OUTPUTS.get(by_id[source][1]["type"])
            if outputs is not None and ((port and port not in outputs) or not outputs):
                kind = by_id[source][1]["type"]
                known = ", ".join(sorted(outputs)) or "none"
                problems.add(
                    f"{where}.from",
                    f"{kind} component {source!r} has no output {port!r} (outputs: {known})",
                )
            else:
                source_ok = True
        if target not in by_id:
            problems.add(f"{where}.to", f"unknown component {target!r}")
        elif not name:
            problems.add(f"{where}.to", "name the input: '<component>.<input>'")
        elif not _NAME_RE.match(name) or name == ALL_INPUTS:
            problems.add(f"{where}.to", f"{name!r} is not a valid input name")
        elif by_id[target][1]["type"] == "input":
            problems.add(f"{where}.to", f"the input component {target!r} takes no inputs")
        else:
            target_ok = True
            incoming[target].add(name)
        if source_ok and target_ok:
            successors[source].append((target, k))

    for id_, (i, component) in by_id.items():
        where = f"{prefix}.components[{i}]"
        if id_ not in usable:
            continue
        if component["type"] == "output" and not incoming[id_]:
            problems.add(where, f"the output component {id_!r} has no incoming edge")
        for name, field in sorted(required_inputs(component).items()):
            if name not in incoming[id_]:
                problems.add(f"{where}.{field}", f"input {name!r} of {id_!r} has no incoming edge")
    cycle = _cycle(list(by_id), successors)
    if cycle is not None:
        path, k = cycle
        problems.add(
            f"{prefix}.edges[{k}]",
            f"this edge closes a cycle: {' → '.join(path)} (iterate with a loop component instead)",
        )


def _cycle(
    nodes: list[str], successors: dict[str, list[tuple[str, int]]]
) -> tuple[list[str], int] | None:
    """A cycle (its path, the index of the edge closing it), or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in nodes:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path = [root]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            if i < len(successors[node]):
                stack[-1] = (node, i + 1)
                nxt, k = successors[node][i]
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt], k
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return None

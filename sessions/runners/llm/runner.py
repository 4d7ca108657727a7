"""The ``llm`` agent kind: a tool-calling loop against an OpenAI-compatible endpoint.

One task is one user turn (``input.message``). The loop (DESIGN §5; the shape of the OpenAI
Assistants and LangGraph ReAct agents): the agent's ``system_prompt``, the session's earlier
turns (rebuilt from its event log: ``message.user``, ``message.completed``, ``tool.result``),
then the new message; each model call streams tokens as ``message.delta`` events and ends with
``message.completed`` (text and tool calls) and a ``usage`` event; each tool call is checked
against the tool's JSON Schema, reported as ``tool.call``, run, and reported as ``tool.result``
(an invalid call or a failing tool goes back to the model as an error result, never a crash);
the loop ends when the model answers without tool calls, or fails with ``max_steps`` after
``max_steps`` model calls. Provider calls go through the official ``openai`` SDK, which retries
429 and 5xx with exponential backoff (``max_retries``); a 4xx ends the task with
``provider_error`` and the provider's message.

Spec: ``{"model": {"base_url", "name", "api_key_env"?}, "system_prompt"?, "tools"?: [...],
"max_steps"?: 8, "max_tokens"?, "temperature"?, "max_retries"?: 3}``. The API key is read from
the server's environment variable ``api_key_env`` (never from the spec, never in events).
Model config, most specific wins: the agent spec, then the session's
``metadata.model_config``, then the task's ``config.model`` (``name``, ``temperature``,
``max_tokens``; never the endpoint, see :data:`MODEL_OVERRIDE`).

Built-in tools (enable them by name): ``shell`` (``bash -c`` in the session sandbox, output
capped), ``read_file``, ``write_file``, ``list_files`` (the workspace, through the sandbox
backend's file operations, so paths never leave it).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import jsonschema
from asgiref.sync import sync_to_async

from runtime_project.exceptions import ApplicationError
from sandboxes import services as sandboxes
from sandboxes.registry import get_backend
from sessions.models import Event
from sessions.runners.base import Runner, TaskContext, TaskResult, validate_schema
from sessions.runners.llm.providers import ModelSettings, ProviderError, provider_for

TOOL_OUTPUT_BYTES = 32 * 1024  # what one tool result may hand back to the model
HISTORY_TYPES = ("message.user", "message.completed", "tool.result")

TOOLS: dict[str, dict[str, Any]] = {
    "shell": {
        "description": "Run a bash command in the session's sandbox (workspace at /workspace).",
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "minLength": 1},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
            },
            "required": ["command"],
            "additionalProperties": False,
        },
    },
    "read_file": {
        "description": "Read a text file of the workspace (path relative to /workspace).",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string", "minLength": 1}},
            "required": ["path"],
            "additionalProperties": False,
        },
    },
    "write_file": {
        "description": "Create or replace a file of the workspace with the given text.",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "minLength": 1},
                "content": {"type": "string"},
            },
            "required": ["path", "content"],
            "additionalProperties": False,
        },
    },
    "list_files": {
        "description": "List a directory of the workspace ('' for its root).",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "additionalProperties": False,
        },
    },
}


# What a session (``metadata.model_config``) or a task (``config.model``) may change, the most
# specific winning. Not the endpoint or its key: pointing the agent's key at another base_url
# would hand the key to whoever runs that URL.
MODEL_OVERRIDE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "max_tokens": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}


def _model_overrides(ctx: TaskContext) -> dict[str, Any]:
    """Spec keys changed by the session's ``metadata.model_config`` then the task's
    ``config.model`` (agent spec → session → task). Raises InvalidInput for a bad session
    value (a task's was checked when it was created)."""
    session_config = (getattr(ctx.session, "metadata", None) or {}).get("model_config") or {}
    validate_schema(session_config, MODEL_OVERRIDE, "metadata.model_config")
    merged = {**session_config, **(ctx.config.get("model") or {})}
    out: dict[str, Any] = {}
    if "name" in merged:
        out["model"] = {**ctx.spec["model"], "name": merged["name"]}
    for key in ("temperature", "max_tokens"):
        if key in merged:
            out[key] = merged[key]
    return out


class LlmRunner(Runner):
    kind = "llm"
    spec_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "model": {
                "type": "object",
                "properties": {
                    "base_url": {"type": "string", "pattern": "^https?://"},
                    "name": {"type": "string", "minLength": 1},
                    "api_key_env": {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$"},
                },
                "required": ["base_url", "name"],
                "additionalProperties": False,
            },
            "system_prompt": {"type": "string"},
            "tools": {"type": "array", "items": {"enum": sorted(TOOLS)}, "uniqueItems": True},
            "max_steps": {"type": "integer", "minimum": 1, "maximum": 100},
            "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 10},
        },
        "required": ["model"],
        "additionalProperties": False,
    }
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"message": {"type": "string", "minLength": 1}},
        "required": ["message"],
    }

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """``config.model`` may choose the model and its sampling for one task."""
        if "model" in config:
            validate_schema(config["model"], MODEL_OVERRIDE, "config.model")

    async def run(self, ctx: TaskContext) -> TaskResult:
        spec = {**ctx.spec, **_model_overrides(ctx)}
        model = spec["model"]
        settings = ModelSettings(
            name=model["name"],
            max_tokens=spec.get("max_tokens"),
            temperature=spec.get("temperature"),
            tools=[{"name": name, **TOOLS[name]} for name in spec.get("tools", [])],
        )
        messages = (
            [{"role": "system", "content": spec["system_prompt"]}]
            if spec.get("system_prompt")
            else []
        )
        messages += await sync_to_async(_history)(ctx)
        messages.append({"role": "user", "content": ctx.input["message"]})
        ctx.emit("message.user", {"text": ctx.input["message"]})
        totals = {"prompt_tokens": 0, "completion_tokens": 0}
        text = ""
        provider = provider_for(
            model,
            api_key=os.environ.get(model.get("api_key_env", ""), ""),
            max_retries=int(spec.get("max_retries", 3)),
        )
        async with provider:
            try:
                for step in range(1, int(spec.get("max_steps", 8)) + 1):
                    ctx.set_phase(f"model_call_{step}")
                    message_id = uuid.uuid4().hex[:12]
                    reply = await provider.complete(
                        messages, settings, cancelled=ctx.cancel_requested,
                        on_text=_delta_emitter(ctx, message_id),
                    )  # fmt: skip
                    text, calls = reply.text, reply.tool_calls
                    ctx.emit(
                        "message.completed",
                        {"message_id": message_id, "text": text, "tool_calls": calls},
                    )
                    for key in totals:
                        totals[key] += int(reply.usage.get(key, 0))
                    ctx.emit("usage", {"step": step, **reply.usage})
                    messages.append(_assistant_message(text, calls))
                    if not calls or ctx.cancel_requested.is_set():
                        return TaskResult(
                            "succeeded", result={"text": text, "steps": step}, usage=totals
                        )
                    for call in calls:
                        ctx.set_phase(f"tool_{call['name']}")
                        output, _ = await self._tool(ctx, call)
                        messages.append(
                            {"role": "tool", "tool_call_id": call["id"], "content": output}
                        )
            except ProviderError as exc:
                details = {"status": exc.status} if exc.status is not None else {}
                return TaskResult(
                    "failed", usage=totals,
                    error={"code": "provider_error", "message": exc.message, "details": details},
                )  # fmt: skip
        return TaskResult(
            "failed", result={"text": text}, usage=totals,
            error={"code": "max_steps", "message": "The agent used all its steps.",
                   "details": {"max_steps": spec.get("max_steps", 8)}},
        )  # fmt: skip

    async def _tool(self, ctx: TaskContext, call: dict[str, str]) -> tuple[str, bool]:
        """Validate and run one tool call; returns ``(output for the model, is_error)``."""
        name, call_id = call["name"], call["id"]
        try:
            if name not in ctx.spec.get("tools", []):
                raise ValueError(f"unknown tool {name!r}")
            args = json.loads(call["arguments"] or "{}")
            jsonschema.validate(args, TOOLS[name]["parameters"])
        except (ValueError, jsonschema.ValidationError) as exc:
            message = exc.message if isinstance(exc, jsonschema.ValidationError) else str(exc)
            ctx.emit(
                "tool.call", {"call_id": call_id, "name": name, "arguments": call["arguments"]}
            )
            return _tool_result(ctx, call_id, name, f"error: invalid tool call: {message}", True)
        ctx.emit("tool.call", {"call_id": call_id, "name": name, "arguments": args})
        try:
            return _tool_result(ctx, call_id, name, await _run_tool(ctx, name, args), False)
        except ApplicationError as exc:
            return _tool_result(ctx, call_id, name, f"error: {exc.message}", True)


def _delta_emitter(ctx: TaskContext, message_id: str) -> Callable[[str], None]:
    """``on_text`` for one model call: each chunk becomes a ``message.delta`` event."""

    def emit(chunk: str) -> None:
        ctx.emit("message.delta", {"message_id": message_id, "text": chunk})

    return emit


def _tool_result(
    ctx: TaskContext, call_id: str, name: str, output: str, is_error: bool
) -> tuple[str, bool]:
    output = output[:TOOL_OUTPUT_BYTES]
    data = {"call_id": call_id, "name": name, "output": output, "is_error": is_error}
    ctx.emit("tool.result", data)
    return output, is_error


async def _run_tool(ctx: TaskContext, name: str, args: dict[str, Any]) -> str:
    session = ctx.session
    if name == "shell":
        execution = await sandboxes.sandbox_exec(
            session=session, argv=["bash", "-c", args["command"]],
            timeout_s=float(args.get("timeout_s", 120)),
        )  # fmt: skip
        out = bytearray()
        code: int | None = None
        async for event in execution:
            if event.stream == "exit":
                code = event.exit_code
            elif len(out) < TOOL_OUTPUT_BYTES:
                out += event.data
        return f"exit_code: {code}\n{out.decode(errors='replace')}"
    spec = await sync_to_async(sandboxes.sandbox_spec)(session=session)
    backend = get_backend()
    if name == "read_file":
        data = await backend.read_file(spec, args["path"], max_bytes=TOOL_OUTPUT_BYTES)
        return data.decode(errors="replace")
    if name == "write_file":
        await backend.write_file(spec, args["path"], args["content"].encode())
        return f"wrote {len(args['content'].encode())} bytes to {args['path']}"
    entries = await backend.list_files(spec, args.get("path", ""))
    return "\n".join(f"{e.type}\t{e.size}\t{e.path}" for e in entries) or "(empty)"


def _assistant_message(text: str, calls: list[dict[str, str]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls
        ]  # fmt: skip
    return message


def _history(ctx: TaskContext) -> list[dict[str, Any]]:
    """The session's earlier turns as chat messages, from its event log (oldest first)."""
    events = Event.objects.filter(session=ctx.session, type__in=HISTORY_TYPES).exclude(
        task__uuid=ctx.task_uuid
    )
    messages: list[dict[str, Any]] = []
    for event in events.order_by("seq"):
        data = event.data
        if event.type == "message.user":
            messages.append({"role": "user", "content": data.get("text", "")})
        elif event.type == "message.completed":
            messages.append(_assistant_message(data.get("text", ""), data.get("tool_calls", [])))
        else:
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": data.get("call_id"),
                    "content": data.get("output", ""),
                }
            )
    return messages

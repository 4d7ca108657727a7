"""The ``llm`` agent kind: a tool-calling loop against an OpenAI-compatible or Anthropic model.

One task is one user turn (``input.message``). The loop (DESIGN §5; the shape of the OpenAI
Assistants and LangGraph ReAct agents): the agent's ``system_prompt``, the session's earlier
turns (rebuilt from its event log, ``history.py``), then the new message; each model call
streams tokens as ``message.delta`` events and ends with ``message.completed`` (text and tool
calls) and a ``usage`` event (tokens, and ``cost_usd`` when the model is priced); each tool
call is checked against the tool's JSON Schema, reported as ``tool.call``, run (the calls of
one reply concurrently), and reported as ``tool.result`` (an invalid call or a failing tool
goes back to the model as an error result, never a crash). The loop ends when the model
answers without tool calls, or fails with ``max_steps``, ``token_limit`` or ``cost_limit``.

Pauses: ``ask_user``, and any tool listed in ``requires_approval``, park the task in
``waiting`` with the pending call (``sessions.services.waiting``); the client's answer queues
it again and the loop continues from the log. A task started by another agent
(``call_agent``) cannot pause: those calls get an error result.

Spec: ``{"model": {"provider"?: "openai"|"anthropic", "base_url", "name", "api_key_env"?,
"pricing"?: {"prompt_per_mtok", "completion_per_mtok"} (USD per million tokens)},
"system_prompt"?, "tools"?: [names], "tool_options"?: {...}, "requires_approval"?: [names],
"agents"?: [slugs for call_agent], "mcp_servers"?: [...], "max_steps"?: 8, "max_tokens"?
(per call), "max_total_tokens"?, "max_cost_usd"?, "temperature"?, "parallel_tool_calls"?:
true, "max_retries"?: 3, "secrets"?: [names or {name, as, path}]}``; the secrets go to the
sandboxed tools and stdio MCP servers and are masked everywhere (``sessions.runners.secrets``).
The API key is read from the server's environment variable ``api_key_env`` (never from the
spec, never in events). Model config, most specific wins: the
agent spec, then the session's ``metadata.model_config``, then the task's ``config.model``
(``name``, ``temperature``, ``max_tokens``; never the endpoint, see :data:`MODEL_OVERRIDE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import jsonschema
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings

from runtime_project import outbound
from runtime_project.db import db_call
from runtime_project.exceptions import ApplicationError
from sessions.runners.base import Runner, TaskContext, TaskResult, validate_schema
from sessions.runners.llm import agents
from sessions.runners.llm.history import assistant_message, conversation, tool_message
from sessions.runners.llm.mcp import MCP_SERVER_SCHEMA, McpToolbox
from sessions.runners.llm.mcp_sandbox import sandbox_stdio
from sessions.runners.llm.providers import ModelSettings, ProviderError, provider_for
from sessions.runners.llm.tools import (
    TOOL_OPTIONS_SCHEMA,
    TOOL_OUTPUT_BYTES,
    TOOLS,
    call_agent_tool,
    run_builtin,
    tool_schema,
)
from sessions.runners.secrets import SECRETS_SPEC_SCHEMA

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
PAUSING = "ask_user"
# What the debugger may put in place of a model call's messages (edit-and-continue).
MESSAGES_EDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "messages": {
            "type": "array",
            "items": {"type": "object", "properties": {"role": {"type": "string"}},
                      "required": ["role"]},
            "minItems": 1,
        }
    },
    "required": ["messages"],
}  # fmt: skip


def model_overrides(ctx: TaskContext) -> dict[str, Any]:
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


def _cost(usage: dict[str, Any], pricing: dict[str, float] | None) -> float | None:
    if not pricing:
        return None
    return round(
        usage.get("prompt_tokens", 0) * pricing.get("prompt_per_mtok", 0) / 1e6
        + usage.get("completion_tokens", 0) * pricing.get("completion_per_mtok", 0) / 1e6,
        8,
    )


class LlmRunner(Runner):
    kind = "llm"
    spec_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "model": {
                "type": "object",
                "properties": {
                    "provider": {"enum": ["openai", "anthropic", "scripted"]},
                    "base_url": {"type": "string", "pattern": "^https?://"},
                    "name": {"type": "string", "minLength": 1},
                    "api_key_env": {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$"},
                    "credential": {"type": "string", "minLength": 1},
                    "pricing": {
                        "type": "object",
                        "properties": {
                            "prompt_per_mtok": {"type": "number", "minimum": 0},
                            "completion_per_mtok": {"type": "number", "minimum": 0},
                        },
                        "additionalProperties": False,
                    },
                },
                "required": ["name"],
                # Every real provider needs an endpoint; the scripted demo runs in-process.
                "if": {"properties": {"provider": {"const": "scripted"}}, "required": ["provider"]},
                "else": {"required": ["base_url"]},
                "additionalProperties": False,
            },
            "system_prompt": {"type": "string"},
            "tools": {
                "type": "array",
                "items": {"enum": sorted([*TOOLS, "call_agent"])},
                "uniqueItems": True,
            },
            "tool_options": TOOL_OPTIONS_SCHEMA,
            "requires_approval": {"type": "array", "items": {"type": "string"}},
            "agents": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "mcp_servers": {"type": "array", "items": MCP_SERVER_SCHEMA, "maxItems": 10},
            "max_steps": {"type": "integer", "minimum": 1, "maximum": 100},
            "max_tokens": {"type": "integer", "minimum": 1},
            "max_total_tokens": {"type": "integer", "minimum": 1},
            "max_cost_usd": {"type": "number", "exclusiveMinimum": 0},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "parallel_tool_calls": {"type": "boolean"},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 10},
            "retry_safe": {"type": "boolean"},
            "secrets": SECRETS_SPEC_SCHEMA,
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
    def capabilities(cls, spec: dict[str, Any]) -> dict[str, bool]:
        tools = set(spec.get("tools") or [])
        return {**super().capabilities(spec), "can_execute_ai": True,
                "can_execute_code": bool(tools & {"shell", "python"})}  # fmt: skip

    @classmethod
    def validate_spec(cls, spec: dict[str, Any]) -> None:
        """The schema, plus: ``call_agent`` needs ``agents``; MCP server URLs are checked by
        the outbound guard when the task runs (DNS may change), not here."""
        super().validate_spec(spec)
        if "call_agent" in spec.get("tools", []) and not spec.get("agents"):
            validate_schema(spec, {"required": ["agents"]}, "spec")

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """``config.model`` may choose the model and its sampling for one task."""
        if "model" in config:
            validate_schema(config["model"], MODEL_OVERRIDE, "config.model")

    async def run(self, ctx: TaskContext) -> TaskResult:
        spec = {**ctx.spec, **model_overrides(ctx)}
        model = spec["model"]
        from providers.access import model_run_check  # lazy, as in _api_key

        await model_run_check(ctx, model)  # team model access: fails with model_not_allowed
        await check_endpoint(model)
        history, state = await db_call(conversation)(ctx)
        prompt = spec.get("system_prompt")
        messages = ([{"role": "system", "content": prompt}] if prompt else []) + history
        if not state.started:
            messages.append({"role": "user", "content": ctx.input["message"]})
            ctx.emit("message.user", {"text": ctx.input["message"]})
        totals = state.totals
        text = ""
        max_steps = int(spec.get("max_steps", 8))
        api_key = await api_key_for(ctx, model)
        async with (
            provider_for(
                model, api_key=api_key, max_retries=int(spec.get("max_retries", 3))
            ) as provider,
            _toolbox(ctx, spec) as tools,
        ):  # fmt: skip
            settings = ModelSettings(
                name=model["name"], max_tokens=spec.get("max_tokens"),
                temperature=spec.get("temperature"), tools=tools.definitions,
                parallel_tool_calls=bool(spec.get("parallel_tool_calls", True)),
            )  # fmt: skip
            try:
                if state.pending:
                    pending = await tools.run_calls(state.pending, messages, announced=True)
                    if pending:
                        return TaskResult("waiting", pending=pending, usage=totals)
                for step in range(state.steps + 1, max_steps + 1):
                    if (over := _over_budget(spec, totals)) is not None:
                        return TaskResult("failed", result={"text": text}, usage=totals,
                                          error=over)  # fmt: skip
                    edited = await ctx.checkpoint(
                        kind="llm", name=model["name"], step_id=f"llm-{step}",
                        input={"messages": messages}, input_schema=MESSAGES_EDIT_SCHEMA,
                    )  # fmt: skip
                    if edited["messages"] is not messages:  # edit-and-continue: the prompt
                        messages[:] = edited["messages"]
                    ctx.set_phase(f"model_call_{step}")
                    if ctx.debugging:  # a debug run keeps every step's whole input
                        ctx.emit("llm.request", {
                            "step": step, "model": model["name"], "messages": messages,
                            "tools": [tool["name"] for tool in tools.definitions],
                        })  # fmt: skip
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
                    usage: dict[str, Any] = dict(reply.usage)
                    cost = _cost(usage, model.get("pricing") or _catalogue_pricing(model))
                    if cost is not None:
                        usage["cost_usd"] = cost
                    for key, value in usage.items():
                        totals[key] = totals.get(key, 0) + value
                    ctx.emit("usage", {"step": step, **usage})
                    messages.append(assistant_message(text, calls))
                    if not calls or ctx.cancel_requested.is_set():
                        return TaskResult(
                            "succeeded", result={"text": text, "steps": step}, usage=totals
                        )
                    pending = await tools.run_calls(calls, messages)
                    if pending:
                        return TaskResult("waiting", pending=pending, usage=totals)
            except ProviderError as exc:
                details = {"status": exc.status} if exc.status is not None else {}
                # A provider may echo the key it was given; it must not reach the task's error.
                message = exc.message.replace(api_key, "[redacted]") if api_key else exc.message
                return TaskResult(
                    "failed", usage=totals,
                    error={"code": "provider_error", "message": message, "details": details},
                )  # fmt: skip
        return TaskResult(
            "failed", result={"text": text}, usage=totals,
            error={"code": "max_steps", "message": "The agent used all its steps.",
                   "details": {"max_steps": max_steps}},
        )  # fmt: skip


async def check_endpoint(model: dict[str, Any]) -> None:
    """Model endpoints pass the outbound guard like any URL a user gives the server (a private
    address would let an agent owner probe the server's network), with
    ``LLM_ENDPOINT_ALLOWED_HOSTS`` allowed too. Raises OutboundRefused (the task fails)."""
    if model.get("provider") == "scripted":
        return  # the server's own loopback demo model, not a user-given URL
    allowed = list(django_settings.LLM_ENDPOINT_ALLOWED_HOSTS)
    await asyncio.to_thread(outbound.check_url, model["base_url"], allow_hosts=allowed)


async def api_key_for(ctx: TaskContext, model: dict[str, Any]) -> str:
    """The provider key: the stored credential ``credential`` of the running agent's team
    (providers app; a missing one fails the task with ``credential_not_found``), else the
    server environment variable ``api_key_env``, if any."""
    if model.get("credential"):
        from providers.selectors import credential_secret_for_agent

        return await sync_to_async(credential_secret_for_agent)(
            agent_id=(ctx.task or ctx.session).agent_id, name=model["credential"],
            provider=model.get("provider", "openai"),
        )  # fmt: skip
    return os.environ.get(model.get("api_key_env", ""), "")


def _catalogue_pricing(model: dict[str, Any]) -> dict[str, float] | None:
    """The price of ``model`` in the operator's ``LLM_MODELS`` catalogue, if listed there."""
    for entry in django_settings.LLM_MODELS:
        if entry["id"] == model["name"]:
            pricing: dict[str, float] | None = entry.get("pricing")
            return pricing
    return None


def _over_budget(spec: dict[str, Any], totals: dict[str, Any]) -> dict[str, Any] | None:
    """The error when the task spent its token or cost budget (checked before each call)."""
    used = totals.get("prompt_tokens", 0) + totals.get("completion_tokens", 0)
    if "max_total_tokens" in spec and used >= spec["max_total_tokens"]:
        return {"code": "token_limit", "message": "The agent used its token budget.",
                "details": {"max_total_tokens": spec["max_total_tokens"],
                            "used": used}}  # fmt: skip
    if "max_cost_usd" in spec and totals.get("cost_usd", 0) >= spec["max_cost_usd"]:
        return {"code": "cost_limit", "message": "The agent used its cost budget.",
                "details": {"max_cost_usd": spec["max_cost_usd"],
                            "cost_usd": totals.get("cost_usd", 0)}}  # fmt: skip
    return None


def _delta_emitter(ctx: TaskContext, message_id: str) -> Callable[[str], None]:
    """``on_text`` for one model call: each chunk becomes a ``message.delta`` event."""

    def emit(chunk: str) -> None:
        ctx.emit("message.delta", {"message_id": message_id, "text": chunk})

    return emit


@contextlib.asynccontextmanager
async def _toolbox(ctx: TaskContext, spec: dict[str, Any]) -> AsyncIterator[Toolbox]:
    servers = spec.get("mcp_servers") or []
    if not servers:
        yield Toolbox(ctx, spec, None)
        return

    def stdio(entry: dict[str, Any]) -> Any:  # stdio servers run in the session's sandbox
        env = {**ctx.secret_env, **(entry.get("env") or {})} or None
        return sandbox_stdio(ctx.session, entry["command"], env=env, cwd=entry.get("cwd", ""))

    async with McpToolbox(servers, url_check=outbound.check_url, stdio=stdio) as mcp:
        for error in mcp.errors:
            ctx.emit("error", {"code": "mcp_unavailable", **error})
        yield Toolbox(ctx, spec, mcp)


class Toolbox:
    """The tools one task offers: built-ins (``spec.tools``), ``call_agent`` and MCP tools."""

    def __init__(self, ctx: TaskContext, spec: dict[str, Any], mcp: McpToolbox | None) -> None:
        self.ctx, self.spec, self.mcp = ctx, spec, mcp
        self.schemas: dict[str, dict[str, Any]] = {}
        for name in spec.get("tools", []):
            agent_tool = name == "call_agent"
            self.schemas[name] = (
                call_agent_tool(spec["agents"]) if agent_tool else tool_schema(name, spec)
            )
        for tool in mcp.tools if mcp else []:
            self.schemas[tool["name"]] = tool
        self.approval = set(spec.get("requires_approval", []))
        self.child = ctx.task is not None and ctx.task.parent_id is not None

    @property
    def definitions(self) -> list[dict[str, Any]]:
        """``[{"name", "description", "parameters"}]`` for the provider."""
        return [
            {"name": name, "description": s.get("description", ""), "parameters": s["parameters"]}
            for name, s in self.schemas.items()
        ]

    def _result(self, call_id: str, name: str, output: str, is_error: bool, **extra: Any) -> str:
        output = self.ctx.mask(output[:TOOL_OUTPUT_BYTES])  # the model never sees a secret
        self.ctx.emit("tool.result", {"call_id": call_id, "name": name, "output": output,
                                      "is_error": is_error, **extra})  # fmt: skip
        return output

    def _check(self, call: dict[str, str], arguments: Any) -> dict[str, Any]:
        """The call's arguments as a dict; ValueError/ValidationError when invalid."""
        if call["name"] not in self.schemas:
            raise ValueError(f"unknown tool {call['name']!r}")
        args = json.loads(arguments) if isinstance(arguments, str) else arguments
        validator = jsonschema.Draft202012Validator(self.schemas[call["name"]]["parameters"])
        problems = sorted(e.message for e in validator.iter_errors(args or {}))
        if problems:  # all of them: the model fixes its call in one go
            raise ValueError("; ".join(problems[:10]))
        return args or {}

    async def run_calls(
        self, calls: list[dict[str, str]], messages: list[dict[str, Any]], announced: bool = False
    ) -> dict[str, Any] | None:
        """Run one reply's tool calls: free ones concurrently, then the ones that need an
        answer (``ask_user``, approvals) in order, using ``ctx.resume`` for the call it
        answers. Appends a tool message per finished call. Returns the pending action of the
        first call still without an answer (the task must wait), else None."""
        free: list[tuple[dict[str, str], dict[str, Any]]] = []
        asking: list[tuple[dict[str, str], dict[str, Any]]] = []
        outputs: dict[str, str] = {}
        for call in calls:
            try:
                args = self._check(call, call["arguments"] or "{}")
            except ValueError as exc:  # json.JSONDecodeError is one
                message = str(exc)
                if not announced:
                    self.ctx.emit("tool.call", {"call_id": call["id"], "name": call["name"],
                                                "arguments": call["arguments"]})  # fmt: skip
                outputs[call["id"]] = self._result(
                    call["id"], call["name"], f"error: invalid tool call: {message}", True
                )
                continue
            needs = "ask_user" if call["name"] == PAUSING else (
                "approval" if call["name"] in self.approval else None
            )  # fmt: skip
            if not announced:
                extra = {"requires_approval": True} if needs == "approval" else {}
                self.ctx.emit("tool.call", {"call_id": call["id"], "name": call["name"],
                                            "arguments": args, **extra})  # fmt: skip
            (asking if needs else free).append((call, args))

        async def run_free(call: dict[str, str], args: dict[str, Any]) -> None:
            outputs[call["id"]] = await self._run(call, args)

        await asyncio.gather(*(run_free(call, args) for call, args in free))
        pending = None
        for call, args in asking:
            pending = await self._answered(call, args, outputs)
            if pending:
                break
        for call in calls:
            if call["id"] in outputs:
                messages.append(tool_message(call["id"], outputs[call["id"]]))
        return pending

    async def _answered(
        self, call: dict[str, str], args: dict[str, Any], outputs: dict[str, str]
    ) -> dict[str, Any] | None:
        name, call_id = call["name"], call["id"]
        if self.child:
            outputs[call_id] = self._result(
                call_id, name, "error: this agent was called by another agent and cannot ask "
                "the user or wait for an approval", True)  # fmt: skip
            return None
        answer = self.ctx.resume if (self.ctx.resume or {}).get("call_id") == call_id else None
        if answer is None:
            kind = "ask_user" if name == PAUSING else "approval"
            pending = {"kind": kind, "call_id": call_id, "name": name, "arguments": args}
            if kind == "ask_user":
                pending["question"] = args["question"]
            return pending
        self.ctx.resume = None  # one answer, one call
        if answer["kind"] == "ask_user":
            outputs[call_id] = self._result(call_id, name, answer["reply"], False)
        elif answer["decision"] == "deny":
            reason = answer.get("reason") or "no reason given"
            outputs[call_id] = self._result(
                call_id, name, f"error: the user denied this call: {reason}", True, denied=True
            )
        elif answer["decision"] == "edit":
            try:
                edited = self._check(call, answer["arguments"])
            except ValueError as exc:
                outputs[call_id] = self._result(
                    call_id, name, f"error: the user's edit is invalid: {exc}", True
                )
                return None
            outputs[call_id] = await self._run(call, edited, edited=True)
        else:
            outputs[call_id] = await self._run(call, args)
        return None

    async def _run(self, call: dict[str, str], args: dict[str, Any], **extra: Any) -> str:
        name, call_id = call["name"], call["id"]
        checked = await self.ctx.checkpoint(
            kind="tool", name=name, step_id=f"tool-{call_id}", input=args,
            input_schema=self.schemas[name]["parameters"] if name in self.schemas else None,
        )  # fmt: skip
        if checked is not args:  # edited in the debugger
            args, extra["edited"] = checked, True
        if extra.get("edited"):
            extra["arguments"] = args
        self.ctx.set_phase(f"tool_{name}")
        try:
            if name == "call_agent":
                output, is_error = await agents.call_agent(self.ctx, args["agent"], args["input"])
            elif name in TOOLS:
                output, is_error = await run_builtin(self.ctx, name, args), False
            else:
                assert self.mcp is not None
                output, is_error = await self.mcp.call(name, args)
        except ApplicationError as exc:
            output, is_error = f"error: {exc.message}", True
        return self._result(call_id, name, output, is_error, **extra)

"""What each workflow component does with its inputs (the graph engine is ``engine.py``).

Each ``run_<type>`` coroutine takes the task context, the component's config, its inputs
(``{name: value}``) and its step id, and returns the component's output (JSON). A component
that cannot do its work raises :class:`ComponentError` (the engine fails the task with
``component_failed``); the task's cancellation reaches running work (a sandboxed process is
terminated, a model stream closed, an HTTP request abandoned).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

from runtime_project import outbound
from runtime_project.db import db_call
from sandboxes import paths
from sandboxes import services as sandboxes
from sandboxes.registry import get_backend
from sessions.runners.base import TaskContext
from sessions.runners.llm.once import ModelCallError, complete_once
from sessions.runners.workflow import expr
from sessions.runners.workflow.spec import ALL_INPUTS, PLACEHOLDER

CODE_OUTPUT_BYTES = 4 * 1024 * 1024  # stdout kept to find the result line
STDERR_TAIL = 2000
ENV_INPUTS_MAX = 64 * 1024  # WORKFLOW_INPUTS is left out of the environment beyond this
INPUTS_DIR = ".workflow"  # in the workspace: each code step's inputs, removed after it ran


class ComponentError(Exception):
    """A component failed: ``message`` for people, ``details`` (JSON) for programs."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


def _lookup(inputs: dict[str, Any], name: str, path: str) -> Any:
    value = json.loads(json.dumps(inputs)) if name == ALL_INPUTS else inputs.get(name)
    for key in filter(None, path.split(".")):
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def render(template: str, inputs: dict[str, Any]) -> str:
    """``{{name}}`` / ``{{name.key}}`` replaced by the input (strings as is, other values as
    JSON, a missing one as ``""``); ``{{inputs}}`` is every input as a JSON object."""
    return PLACEHOLDER.sub(lambda m: _text(_lookup(inputs, m.group(1), m.group(2))), template)


def render_json(value: Any, inputs: dict[str, Any]) -> Any:
    """``render`` applied to every string of a JSON value; a string that is exactly one
    placeholder becomes the input's value itself (so numbers and objects keep their type)."""
    if isinstance(value, str):
        match = PLACEHOLDER.fullmatch(value.strip())
        if match:
            return _lookup(inputs, match.group(1), match.group(2))
        return render(value, inputs)
    if isinstance(value, list):
        return [render_json(v, inputs) for v in value]
    if isinstance(value, dict):
        return {k: render_json(v, inputs) for k, v in value.items()}
    return value


def run_condition(config: dict[str, Any], inputs: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The output ``{"result", "value"}`` and the port taken (``true``/``false``); ``value``
    is the ``value`` input when there is one, else every input."""
    try:
        result = bool(expr.evaluate(config["expression"], inputs))
    except expr.ExpressionError as exc:
        raise ComponentError(f"the expression failed: {exc}") from None
    value = inputs.get("value", inputs)
    return {"result": result, "value": value}, "true" if result else "false"


def run_emit(ctx: TaskContext, config: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Emit one ``custom`` event whose ``data`` is ``config.data`` rendered (``render_json``);
    the output is that object. Raises :class:`ComponentError` when it is not an object."""
    data = render_json(config["data"], inputs)
    if not isinstance(data, dict):
        raise ComponentError(f"data is {type(data).__name__}, not an object", {"data": data})
    ctx.emit("custom", data)
    return data


async def run_llm_prompt(
    ctx: TaskContext,
    config: dict[str, Any],
    inputs: dict[str, Any],
    step_id: str,
    usage: dict[str, Any],
) -> dict[str, Any]:
    """One model call with the rendered prompt; output ``{"text", "json"}`` (``json`` the
    parsed reply when it is JSON, else None; with ``config.json`` a non-JSON reply fails)."""
    messages = []
    if config.get("system"):
        messages.append({"role": "system", "content": render(config["system"], inputs)})
    messages.append({"role": "user", "content": render(config["prompt"], inputs)})
    try:
        reply = await complete_once(ctx, config, messages, tags={"step_id": step_id})
    except ModelCallError as exc:
        raise ComponentError(exc.message, {"status": exc.status}) from None
    for key, value in reply.usage.items():
        usage[key] = usage.get(key, 0) + value
    ctx.emit("usage", {"step_id": step_id, **reply.usage})
    parsed: Any = None
    with contextlib.suppress(ValueError):
        parsed = json.loads(reply.text)
    if config.get("json") and parsed is None:
        raise ComponentError("the model's reply is not JSON", {"text": reply.text[:500]})
    return {"text": reply.text, "json": parsed}


async def run_http_request(
    config: dict[str, Any], inputs: dict[str, Any], ctx: TaskContext | None = None
) -> dict[str, Any]:
    """One request through the outbound guard; output ``{"status", "headers", "body",
    "json"}``. A status of 400 or more fails the component unless ``fail_on_status`` is
    false. With ``connection`` the request carries the task user's OAuth token for it
    (``integrations.connections.runtime``; masked in everything the run emits)."""
    url = render(config["url"], inputs)
    headers = {k: render(v, inputs) for k, v in (config.get("headers") or {}).items()}
    if config.get("connection"):
        from integrations.connections.runtime import authorize

        headers = await authorize(ctx, name=config["connection"], url=url, headers=headers)
    body: bytes | None = None
    if "body" in config:
        raw = config["body"]
        if isinstance(raw, str):
            body = render(raw, inputs).encode()
        else:
            body = json.dumps(render_json(raw, inputs)).encode()
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
    result = await outbound.fetch(
        url,
        method=config.get("method", "GET"),
        headers=headers,
        body=body,
        max_bytes=int(config.get("max_bytes", 1_000_000)),
        timeout_s=float(config.get("timeout_s", 30.0)),
    )
    text = result.body.decode(errors="replace")
    parsed: Any = None
    with contextlib.suppress(ValueError):
        parsed = json.loads(text) if text else None
    output = {"status": result.status, "headers": result.headers, "body": text, "json": parsed}
    if result.status >= 400 and config.get("fail_on_status", True):
        raise ComponentError(
            f"the server answered HTTP {result.status}",
            {"status": result.status, "body": text[:500]},
        )
    return output


def _write_inputs(ctx: TaskContext, path: str, inputs: dict[str, Any]) -> None:
    ctx.workspace.mkdir(parents=True, exist_ok=True)
    with paths.open_write(ctx.workspace, path) as fh:
        fh.write(json.dumps(inputs).encode())


def _remove_inputs(ctx: TaskContext, path: str) -> None:
    with contextlib.suppress(OSError):
        (ctx.workspace / path).unlink()


def _env(config: dict[str, Any], inputs: dict[str, Any], ctx: TaskContext) -> dict[str, str]:
    env = {**(config.get("env") or {}), **ctx.secret_env}
    encoded = json.dumps(inputs)
    if len(encoded) <= ENV_INPUTS_MAX:
        env["WORKFLOW_INPUTS"] = encoded
    for name, value in inputs.items():
        if isinstance(value, str | int | float | bool) and len(str(value)) <= 4096:
            key = "INPUT_" + name.upper().replace("-", "_")
            env[key] = json.dumps(value) if isinstance(value, bool) else str(value)
    return env


async def run_code(
    ctx: TaskContext, config: dict[str, Any], inputs: dict[str, Any], step_id: str
) -> Any:
    """Run ``source`` (python or shell) in the session's sandbox, the inputs as JSON on stdin
    (and ``WORKFLOW_INPUTS`` / ``INPUT_<NAME>`` in the environment). The output is the JSON of
    ``output_file`` (a workspace path) when set, else of the last non-empty stdout line, else
    that line as text. A non-zero exit fails the component."""
    source = config["source"]
    process_id = uuid.uuid4().hex[:12]
    # stdin comes from a file of the workspace, not the exec's stdin pipe: a command that
    # exits without reading a piped stdin can take the sandbox supervisor down with it.
    inputs_file = f"{INPUTS_DIR}/inputs-{process_id}.json"
    await asyncio.to_thread(_write_inputs, ctx, inputs_file, inputs)
    program = ["bash", "-c", source] if config.get("language") == "shell" else [
        "python3", "-c", source]  # fmt: skip
    argv = ["bash", "-c", 'exec "$0" "$@" < "$WORKFLOW_INPUTS_FILE"', *program]
    env = {**_env(config, inputs, ctx), "WORKFLOW_INPUTS_FILE": inputs_file}
    try:
        execution = await sandboxes.sandbox_exec(
            session=ctx.session, argv=argv, env=env,
            timeout_s=float(config.get("timeout_s", 300)),
        )  # fmt: skip
    except BaseException:
        await asyncio.to_thread(_remove_inputs, ctx, inputs_file)
        raise
    ctx.emit("process.started", {"process_id": process_id, "step_id": step_id,
                                 "argv": [*program[:2], "…"]})  # fmt: skip
    out, err = bytearray(), bytearray()
    code: int | None = None
    finished, last = False, None
    try:
        async for event in execution:
            if event.stream == "exit":
                code, finished, last = event.exit_code, True, event
                break
            text = event.data.decode(errors="replace")
            ctx.emit(f"process.{event.stream}", {"process_id": process_id, "text": text})
            buffer = out if event.stream == "stdout" else err
            if len(buffer) < CODE_OUTPUT_BYTES:
                buffer += event.data
    finally:
        if not finished:  # cancelled: never leave the process tree behind
            with contextlib.suppress(Exception):
                await asyncio.shield(execution.terminate(grace_s=0))
        await asyncio.to_thread(_remove_inputs, ctx, inputs_file)
    assert last is not None
    how = {"timed_out": last.timed_out, "killed": last.killed, "limit": last.limit}
    ctx.emit("process.exit", {"process_id": process_id, "exit_code": code, **how})
    if code != 0:
        raise ComponentError(
            f"the code exited with code {code}",
            {"exit_code": code, **how, "stderr": err.decode(errors="replace")[-STDERR_TAIL:]},
        )
    if config.get("output_file"):
        spec = await db_call(sandboxes.sandbox_spec)(session=ctx.session)
        try:
            data = await get_backend().read_file(
                spec, config["output_file"], max_bytes=CODE_OUTPUT_BYTES
            )
            return json.loads(data)
        except ValueError as exc:
            raise ComponentError(f"output_file is not JSON: {exc}") from None
        except Exception as exc:
            raise ComponentError(f"cannot read output_file: {exc}") from None
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return None
    try:
        return json.loads(lines[-1])
    except ValueError:
        return lines[-1]


async def run_agent_call(
    ctx: TaskContext, config: dict[str, Any], inputs: dict[str, Any]
) -> dict[str, Any]:
    """Run agent ``config.agent`` as a child task of this one (``call_agent`` of the llm
    kind); its input is the ``input`` input when it is an object, else every input. Output
    ``{"task_id", "status", "result", "error"}``; a child that does not succeed fails it."""
    from sessions.runners.llm import agents

    data = inputs["input"] if isinstance(inputs.get("input"), dict) else inputs
    text, is_error = await agents.call_agent(ctx, config["agent"], data)
    outcome: dict[str, Any] = json.loads(text)
    if is_error:
        error = outcome.get("error") or {}
        raise ComponentError(
            f"agent {config['agent']!r} ended {outcome['status']}: {error.get('message', '')}",
            {"task_id": outcome["task_id"], "status": outcome["status"], "error": error},
        )
    return outcome

"""The ``python`` agent kind: a persistent Jupyter kernel per session, inside its sandbox.

The kernel (ipykernel, from the sandbox toolchain) is started by ``runtime_client.bridge``, a
background process of the session's sandbox that serves it on the Unix socket
``/workspace/.agent/kernel/bridge.sock``. Tasks connect to that socket, so the kernel and its
variables outlive a task (and a worker: a new worker reconnects) and stop with the sandbox.
Cells run through ``runtime_client.notebook``, the same code the remote runtime client runs,
so a task's input, events and result are the ones documented there (``docs/python-kind.md``).

Here the server adds: the sandbox and the bridge's life cycle, symlink-safe workspace access for
notebooks, and MIME values larger than ``spec.output_inline_bytes`` (default a quarter of
``EVENT_INLINE_MAX_BYTES``) moved into artifacts: the ``output.display`` event then lists them
under ``artifacts`` (``{mime: {"id", "name", "size", "content_type"}}``) instead of inlining
them, and an ``artifact.created`` event announces each.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import mimetypes
import time
from pathlib import Path
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from django.conf import settings

from runtime_client.kernel import MAX_FRAME_BYTES, BridgeKernel, KernelDied
from runtime_client.notebook import AICellError, run_python_task
from runtime_project.exceptions import ApplicationError, PayloadTooLarge
from sandboxes import paths
from sandboxes.base import SandboxError
from sandboxes.registry import get_backend
from sandboxes.services import sandbox_spec
from sessions.runners.base import Runner, TaskContext, TaskResult
from sessions.runners.command import SANDBOX_SPEC_PROPERTIES
from sessions.runners.llm.once import ModelCallError, complete_once
from sessions.runners.secrets import SECRETS_SPEC_SCHEMA
from sessions.runners.workflow.spec import MODEL_SCHEMA
from sessions.services.artifacts import artifact_create, artifact_reference

SOCKET = ".agent/kernel/bridge.sock"  # relative to the workspace, i.e. /workspace/... inside
BRIDGE_START_TIMEOUT_S = 30.0
# Below the 10 s the executor waits for a force-cancelled runner (sessions.execution).
KERNEL_RESTART_TIMEOUT_S = 8.0
NOTEBOOK_MAX_BYTES = 50 * 1024 * 1024
# MIME types whose Jupyter value is base64 text; their artifact holds the decoded bytes.
_BASE64_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")

_CELLS = {
    "type": "array",
    "items": {
        "oneOf": [
            {"type": "string"},
            {"type": "object", "properties": {"sql": {"type": "string", "minLength": 1}},
             "required": ["sql"], "additionalProperties": False},
            {"type": "object", "properties": {"ai": {"type": "string", "minLength": 1}},
             "required": ["ai"], "additionalProperties": False},
        ]
    },
    "minItems": 1,
    "maxItems": 1000,
}  # fmt: skip


class PythonRunner(Runner):
    kind = "python"
    spec_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **SANDBOX_SPEC_PROPERTIES,
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "secrets": SECRETS_SPEC_SCHEMA,
            "limits": {
                "type": "object",
                "properties": {
                    "memory_mb": {"type": "integer", "minimum": 64},
                    "cpu_s": {"type": "integer", "minimum": 1},
                    "pids": {"type": "integer", "minimum": 16},
                    "file_size_mb": {"type": "integer", "minimum": 1},
                    "tmp_mb": {"type": "integer", "minimum": 1},
                },
                "additionalProperties": False,
            },
            "output_inline_bytes": {
                "description": "MIME values larger than this (bytes) go to artifacts.",
                "type": "integer",
                "minimum": 1024,
            },
            "sql": {
                "description": "The SQL cell runner: {\"sql\": \"…\"} cells run against this "
                "SQLite database file of the workspace.",
                "type": "object",
                "properties": {
                    "database": {"type": "string", "minLength": 1, "maxLength": 1024,
                                 "pattern": r"^(?!/)(?!.*(^|/)\.\.(/|$)).+$"},
                    "readonly": {"type": "boolean"},
                    "max_rows": {"type": "integer", "minimum": 1, "maximum": 100000},
                },
                "required": ["database"],
                "additionalProperties": False,
            },
            "model": MODEL_SCHEMA,
            "ai_system": {
                "description": "System prompt of AI cells (default: a short one that asks "
                "for Markdown).",
                "type": "string",
            },
            "retry_safe": {"type": "boolean"},
        },
        "additionalProperties": False,
    }  # fmt: skip
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "cells": _CELLS,
            "code": {"type": "string"},
            "notebook": {"type": "string", "minLength": 1, "pattern": r"\.ipynb$"},
            "output_path": {"type": "string", "minLength": 1, "pattern": r"\.ipynb$"},
            "allow_errors": {"type": "boolean"},
            "restart": {"type": "boolean"},
        },
        "oneOf": [{"required": ["cells"]}, {"required": ["code"]}, {"required": ["notebook"]}],
        "dependentRequired": {"output_path": ["notebook"]},
    }

    @classmethod
    def capabilities(cls, spec: dict[str, Any]) -> dict[str, bool]:
        """What a client may ask of this agent (``can_execute_code``, …)."""
        return {"can_execute_code": True, "can_execute_sql": "sql" in spec,
                "can_execute_ai": "model" in spec}  # fmt: skip

    async def run(self, ctx: TaskContext) -> TaskResult:
        ctx.workspace.mkdir(parents=True, exist_ok=True)
        sandbox = await sync_to_async(sandbox_spec)(session=ctx.session, agent_spec=ctx.spec)
        await ctx.ensure_sandbox(sandbox)
        kernel = await self._connect(ctx, sandbox)
        inline_max = int(
            ctx.spec.get("output_inline_bytes") or settings.EVENT_INLINE_MAX_BYTES // 4
        )

        async def emit(event_type: str, data: dict[str, Any]) -> None:
            if event_type == "output.display":
                data = await self._externalize(ctx, data, inline_max)
            ctx.emit(event_type, data)

        ctx.set_phase("executing")
        try:
            outcome = await run_python_task(
                kernel, ctx.input, emit, cancel=ctx.cancel_requested,
                read_file=lambda p: _read_notebook(ctx.workspace, p),
                write_file=lambda p, data: _write_file(ctx.workspace, p, data),
                sql=_sql_config(ctx.spec),
                ai=functools.partial(_ai_cell, ctx) if "model" in ctx.spec else None,
                before_cell=functools.partial(_before_cell, ctx),
            )  # fmt: skip
        except asyncio.CancelledError:
            if ctx.cancel_requested.is_set():
                # A forced stop: the cell ignored the interrupt (SIGINT ignored, a C loop) for
                # the whole grace period. The kernel is still busy with it and every later task
                # of the session would queue behind it, so it is replaced (variables are lost).
                ctx.emit("kernel.restarted", {"reason": "unresponsive"})
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        asyncio.wait_for(kernel.restart(), KERNEL_RESTART_TIMEOUT_S)
                    )
            raise
        finally:
            await kernel.close()
        return TaskResult(
            status=outcome["status"],
            result=outcome["result"],
            error=outcome["error"],
            usage=outcome.get("usage") or {},
        )

    async def _connect(self, ctx: TaskContext, sandbox: Any) -> BridgeKernel:
        """A connection to the session's kernel bridge, starting the bridge if none answers.

        Raises:
            SandboxError: the bridge did not come up within ``BRIDGE_START_TIMEOUT_S``.
        """

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            sock = await asyncio.to_thread(paths.connect_unix, ctx.workspace, SOCKET)
            return await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME_BYTES)

        kernel = BridgeKernel(connect)
        try:
            await kernel.open()
            return kernel
        except (OSError, paths.WorkspaceFileNotFound, paths.WorkspacePathError, KernelDied):
            pass  # no bridge yet (new or restarted sandbox), or a stale socket file
        with contextlib.suppress(Exception):
            await asyncio.to_thread(paths.remove, ctx.workspace, SOCKET)
        toolchain = str(settings.TOOLCHAIN_DIR)
        env = {
            **ctx.spec.get("env", {}),
            **ctx.secret_env,
            "PYTHONPATH": toolchain,
            "AGENT_TOOLCHAIN": toolchain,
            "AGENT_SESSION_ID": ctx.session_uuid,
        }
        argv = ["python3", "-m", "runtime_client.bridge",
                "--socket", f"/workspace/{SOCKET}", "--cwd", "/workspace"]  # fmt: skip
        await get_backend().start_process(sandbox, argv, env=env)
        ctx.emit("log", {"level": "info", "message": "kernel bridge started"})
        deadline = time.monotonic() + BRIDGE_START_TIMEOUT_S
        while True:
            try:
                await kernel.open()
                return kernel
            except (OSError, paths.WorkspaceFileNotFound, KernelDied) as exc:
                if time.monotonic() > deadline:
                    raise SandboxError(
                        "The kernel bridge did not start in the sandbox.",
                        details={"reason": str(exc)},
                    ) from None
                await asyncio.sleep(0.05)

    async def _externalize(
        self, ctx: TaskContext, data: dict[str, Any], inline_max: int
    ) -> dict[str, Any]:
        """Move MIME values over ``inline_max`` bytes of a display event into artifacts."""
        bundle = dict(data.get("data") or {})
        moved: dict[str, Any] = {}
        for mime, value in list(bundle.items()):
            raw = value if isinstance(value, str) else json.dumps(value)
            if len(raw) <= inline_max:
                continue
            content = raw.encode()
            if mime in _BASE64_MIMES and isinstance(value, str):
                with contextlib.suppress(binascii.Error, ValueError):
                    content = base64.b64decode(value)
            ext = mimetypes.guess_extension(mime) or (".json" if "json" in mime else ".txt")
            artifact = await sync_to_async(artifact_create)(
                session=ctx.session,
                task_id=getattr(ctx.task, "pk", None),
                name=f"cell-{data.get('cell', 0)}-output{ext}",
                content=content,
                content_type=mime,
            )
            ref = artifact_reference(artifact)
            ctx.emit("artifact.created", {**ref, "cell": data.get("cell"), "mime": mime})
            moved[mime] = ref
            del bundle[mime]
        if not moved:
            return data
        return {**data, "data": bundle, "artifacts": moved}


AI_SYSTEM = (
    "You are an assistant inside a Python notebook. Answer the user's request concisely in "
    "Markdown; put code in fenced ```python blocks."
)


CELL_EDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"code": {"type": "string"}},
    "required": ["code"],
}


async def _before_cell(ctx: TaskContext, cell: int, code: str, language: str) -> str:
    """The debugger's checkpoint before cell ``cell``; a python cell's code may be edited
    (an SQL or AI cell's may not: its code is generated)."""
    edited = await ctx.checkpoint(
        kind="cell", name=str(cell), step_id=f"cell-{cell}",
        input={"code": code, "language": language}, input_schema=CELL_EDIT_SCHEMA,
        editable=language == "python",
    )  # fmt: skip
    return str(edited["code"]) if language == "python" else code


async def _ai_cell(ctx: TaskContext, cell: int, prompt: str) -> dict[str, Any]:
    """An AI cell: the agent's ``spec.model`` (the session's ``metadata.model_config`` and the
    task's ``config.model`` may change its name and sampling, as for ``llm`` agents), streamed
    as ``message.delta`` events of the cell, then ``message.completed`` and ``usage``.

    Raises:
        AICellError: the endpoint is refused or the provider fails (keys redacted).
    """
    messages = [{"role": "system", "content": ctx.spec.get("ai_system") or AI_SYSTEM},
                {"role": "user", "content": prompt}]  # fmt: skip
    try:
        reply = await complete_once(ctx, {}, messages, tags={"cell": cell})
    except (ApplicationError, ModelCallError) as exc:  # a refused endpoint, a failed call
        raise AICellError(exc.message) from None
    ctx.emit("usage", {"cell": cell, **reply.usage})
    return {"text": reply.text, "usage": dict(reply.usage)}


def _sql_config(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The SQL cell runner's config with the database path as the kernel sees it."""
    sql = spec.get("sql")
    if not sql:
        return None
    return {**sql, "database": f"/workspace/{paths.normalize(sql['database'])}"}


def _read_notebook(root: Path, path: str) -> bytes:
    entry = paths.stat(root, path)
    if entry.size > NOTEBOOK_MAX_BYTES:
        raise PayloadTooLarge(f"The notebook is larger than {NOTEBOOK_MAX_BYTES} bytes.")
    with paths.open_read(root, path) as fh:
        return fh.read()


def _write_file(root: Path, path: str, data: bytes) -> None:
    with paths.open_write(root, path) as fh:
        fh.write(data)

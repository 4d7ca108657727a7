"""Reads for session sandboxes: the live state the REST API and the admin show."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from sandboxes.base import ProcessInfo, SandboxProcessNotFound
from sandboxes.models import Sandbox
from sandboxes.registry import get_backend
from sandboxes.services import sandbox_get_or_create, sandbox_spec
from sessions.models import Session


async def sandbox_state(*, session: Session) -> dict[str, Any]:
    """``{"session", "state", "backend", "tier", "isolated", "idle_policy", "idle_timeout_s",
    "network", "limits", "usage", "processes", "started_at", "last_active_at", "start_count",
    "last_started_at", "last_stopped_at"}`` (times: epoch seconds from the backend, datetimes
    from the database; ``usage``: ``memory_bytes``, ``pids`` while running)."""

    def rows() -> tuple[Sandbox, Any]:
        return sandbox_get_or_create(session=session), sandbox_spec(session=session)

    row, spec = await sync_to_async(rows)()
    backend = get_backend()
    caps = backend.capabilities()
    info = await backend.info(str(session.uuid))
    running = info is not None and info.state == "running"
    lim = spec.limits
    return {
        "session": session.uuid,
        "state": "running" if running else "stopped",
        "backend": backend.name,
        "tier": info.tier if info is not None else caps.tier,
        "isolated": caps.isolated,
        "idle_policy": row.idle_policy,
        "idle_timeout_s": row.idle_timeout_s,
        "network": spec.network,
        "limits": {
            "memory_mb": lim.memory_mb,
            "cpu_s": lim.cpu_s,
            "pids": lim.pids,
            "file_size_mb": lim.file_size_mb,
            "tmp_mb": lim.tmp_mb,
        },
        "usage": dict(info.usage) if running and info is not None else {},
        "processes": [
            {
                "process_id": p.process_id,
                "argv": list(p.argv),
                "started_at": p.started_at,
                "running": p.running,
                "exit_code": p.exit_code,
                "output_bytes": p.output_bytes,
            }
            for p in (info.processes if info is not None else ())
        ],
        "started_at": info.started_at if running and info is not None else None,
        "last_active_at": info.last_active_at if running and info is not None else None,
        "start_count": row.start_count,
        "last_started_at": row.last_started_at,
        "last_stopped_at": row.last_stopped_at,
    }


async def sandbox_processes(*, session: Session) -> list[ProcessInfo]:
    """The background processes of the session's sandbox (``[]`` while it is stopped)."""
    return await get_backend().processes(str(session.uuid))


async def sandbox_process(*, session: Session, process_id: str) -> ProcessInfo:
    """One background process of the session's sandbox.

    Raises:
        SandboxProcessNotFound: no such process (or the sandbox is stopped).
    """
    for process in await sandbox_processes(session=session):
        if process.process_id == process_id:
            return process
    raise SandboxProcessNotFound("No such process in this sandbox.", details={"id": process_id})

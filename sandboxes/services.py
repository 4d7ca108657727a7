"""Writes for session sandboxes: build the spec, start on demand, stop, configure, reap.

The backend (``sandboxes.registry.get_backend()``) does the work; these functions decide which
sandbox a session gets and keep the ``Sandbox`` row's history. The same spec comes out for a
session whoever asks (a task, the REST exec, a background process), so they all share one
running sandbox (the backend restarts a sandbox whose spec changed).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from observability.metrics import observe_sandbox_start
from runtime_project.exceptions import InvalidInput
from sandboxes.base import (
    Execution,
    Limits,
    ProcessInfo,
    SandboxInfo,
    SandboxSpec,
)
from sandboxes.limits import sandbox_start_slot
from sandboxes.models import IdlePolicy, Sandbox
from sandboxes.registry import get_backend
from sessions.models import Session

logger = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], None]


def sandbox_get_or_create(*, session: Session) -> Sandbox:
    """The session's ``Sandbox`` row (created with the default idle policy)."""
    sandbox, _ = Sandbox.objects.get_or_create(
        session=session, defaults={"idle_timeout_s": settings.SANDBOX_IDLE_TIMEOUT_S}
    )
    return sandbox


def sandbox_update(
    *, session: Session, idle_policy: str | None = None, idle_timeout_s: int | None = None
) -> Sandbox:
    """Change the idle policy; a running sandbox picks it up on its next start.

    Raises:
        InvalidInput: unknown policy or a timeout outside 1 s to 7 days.
    """
    sandbox = sandbox_get_or_create(session=session)
    if idle_policy is not None:
        if idle_policy not in IdlePolicy.values:
            raise InvalidInput(
                "Unknown idle policy.", details={"fields": {"idle_policy": ["stop or keep"]}}
            )
        sandbox.idle_policy = idle_policy
    if idle_timeout_s is not None:
        if not 1 <= idle_timeout_s <= 7 * 24 * 3600:
            raise InvalidInput(
                "idle_timeout_s must be between 1 and 604800 seconds.",
                details={"fields": {"idle_timeout_s": [str(idle_timeout_s)]}},
            )
        sandbox.idle_timeout_s = idle_timeout_s
    sandbox.save()
    return sandbox


def sandbox_spec(*, session: Session, agent_spec: Mapping[str, Any] | None = None) -> SandboxSpec:
    """The sandbox a session's commands run in, from the agent spec (``network``,
    ``allow_hosts``, ``limits``;
    default: the agent's current spec, a task passes its pinned version's) and the session's
    ``Sandbox`` row (idle policy). The sandbox toolchain and the coding-agent CLIs, when
    installed, are bound read-only."""
    sandbox = sandbox_get_or_create(session=session)
    spec: Mapping[str, Any] = agent_spec if agent_spec is not None else (session.agent.spec or {})
    limits: Mapping[str, Any] = spec.get("limits", {}) or {}
    toolchain = Path(settings.TOOLCHAIN_DIR)
    coding_agents = Path(settings.CODING_AGENTS_DIR)
    return SandboxSpec(
        sandbox_id=str(session.uuid),
        workspace=session.workspace_path,
        network=spec.get("network", settings.SANDBOX_NETWORK),
        allow_hosts=tuple(spec.get("allow_hosts", ())),
        image=spec.get("image"),
        limits=Limits(
            memory_mb=limits.get("memory_mb", settings.SANDBOX_MEMORY_MB),
            cpu_s=limits.get("cpu_s", settings.SANDBOX_CPU_S),
            pids=limits.get("pids", settings.SANDBOX_PIDS),
            file_size_mb=limits.get("file_size_mb", 1024),
            tmp_mb=limits.get("tmp_mb", 512),
        ),
        readonly_paths=tuple(p for p in (toolchain, coding_agents) if p.is_dir()),
        labels={
            "session": str(session.uuid),
            "agent": str(session.agent.uuid),
            "owner": str(session.owner_id),
            "team": str(session.team.uuid),  # counted by the team's quota (sandboxes/limits.py)
        },
        idle_timeout_s=(
            float(sandbox.idle_timeout_s) if sandbox.idle_policy == IdlePolicy.STOP else None
        ),
    )


def _record_start(session_id: int, info: SandboxInfo) -> None:
    Sandbox.objects.filter(session_id=session_id).update(
        backend=info.backend,
        tier=info.tier,
        start_count=F("start_count") + 1,
        last_started_at=timezone.now(),
    )


def _record_stop(session_id: int) -> None:
    Sandbox.objects.filter(session_id=session_id).update(last_stopped_at=timezone.now())


async def sandbox_ensure(*, session: Session, spec: SandboxSpec, emit: Emit | None = None) -> bool:
    """Start the session's sandbox if it is not running; returns whether it was started.

    A start is announced as ``sandbox.starting`` and ``sandbox.started`` (``backend``, ``tier``,
    ``duration_ms``) through ``emit`` (a task's event stream), so a client sees why the first
    command of a session (or the first after an idle stop) takes longer.

    Raises:
        SandboxUnavailable / SandboxError: from the backend.
        TooManyRequests: the session's team has its limit of live sandboxes
            (``team_sandbox_limit``, 429).
    """
    backend = get_backend()
    if await backend.is_running(spec.sandbox_id):
        return False
    async with sandbox_start_slot(session=session, backend=backend):
        if emit is not None:
            emit("sandbox.starting", {"backend": backend.name})
        started = time.monotonic()
        info = await backend.create(spec)
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    observe_sandbox_start(info.backend, duration_ms / 1000)  # observability/metrics.py
    await sync_to_async(_record_start)(session.pk, info)
    if emit is not None:
        emit(
            "sandbox.started",
            {"backend": info.backend, "tier": info.tier, "duration_ms": duration_ms},
        )
    return True


async def sandbox_stop(*, session: Session) -> bool:
    """Stop the session's sandbox (its processes die, its workspace stays); idempotent.
    Returns whether it was running."""
    stopped = await get_backend().stop(str(session.uuid))
    if stopped:
        await sync_to_async(_record_stop)(session.pk)
    return stopped


async def sandbox_reap() -> list[str]:
    """Periodic clean-up (the executor calls it): forget sandboxes that stopped themselves
    after their idle timeout, and stop running sandboxes whose session was deleted. Returns
    the ids stopped here."""
    backend = get_backend()
    await backend.reap_idle()
    # Only sandboxes a session owns (labelled so by sandbox_spec); others are not ours to stop.
    running = [info for info in await backend.list_sandboxes() if info.labels.get("session")]
    if not running:
        return []
    ids = [info.labels["session"] for info in running]

    def orphans() -> set[str]:
        alive = set(
            map(
                str,
                Session.objects.filter(uuid__in=ids, deleted_at__isnull=True).values_list(
                    "uuid", flat=True
                ),
            )
        )
        return {i for i in ids if i not in alive}

    stopped = []
    for sandbox_id in await sync_to_async(orphans)():
        if await backend.stop(sandbox_id):
            logger.info("stopped sandbox %s: its session is gone", sandbox_id)
            stopped.append(sandbox_id)
    return stopped


def with_wall_timeout(spec: SandboxSpec, timeout_s: float) -> SandboxSpec:
    """``spec`` with a per-command wall-clock limit (seconds); the sandbox is the same one."""
    return dataclasses.replace(
        spec, limits=dataclasses.replace(spec.limits, wall_timeout_s=timeout_s)
    )


async def sandbox_start_process(
    *, session: Session, argv: list[str], cwd: str = "", env: Mapping[str, str] | None = None
) -> ProcessInfo:
    """Start a background process in the session's sandbox (starting the sandbox if needed).

    Raises:
        SandboxError: the backend has no background processes, or the start failed.
    """
    spec = await sync_to_async(sandbox_spec)(session=session)
    await sandbox_ensure(session=session, spec=spec)
    return await get_backend().start_process(spec, argv, cwd=cwd, env=env)


async def sandbox_exec(
    *,
    session: Session,
    argv: list[str],
    cwd: str = "",
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout_s: float | None = None,
) -> Execution:
    """Run ``argv`` in the session's sandbox (started if needed, with ``sandbox.*`` history);
    ``timeout_s`` is a per-command wall-clock limit in seconds.

    Raises:
        SandboxUnavailable / SandboxError / WorkspacePathError: as the backend's ``exec``.
    """
    spec = await sync_to_async(sandbox_spec)(session=session)
    if timeout_s is not None:
        spec = with_wall_timeout(spec, timeout_s)
    await sandbox_ensure(session=session, spec=spec)
    return await get_backend().exec(spec, argv, cwd=cwd, env=env, stdin=stdin)


async def sandbox_write_stdin(
    *, session: Session, process_id: str, data: bytes, eof: bool = False
) -> None:
    """Send ``data`` to a background process's stdin (``eof`` closes it).

    Raises:
        SandboxProcessNotFound: no such running process.
    """
    await get_backend().write_stdin(str(session.uuid), process_id, data, eof=eof)


async def sandbox_kill_process(*, session: Session, process_id: str, signal: int) -> None:
    """Signal a background process's whole tree. Raises SandboxProcessNotFound."""
    await get_backend().kill_process(str(session.uuid), process_id, signal=signal)


async def sandbox_attach(*, session: Session, process_id: str) -> Execution:
    """Re-attach to a background process: retained output, then live, then exit.

    Raises:
        SandboxProcessNotFound: no such process in the session's sandbox.
    """
    from sandboxes.selectors import sandbox_process  # selectors import this module

    await sandbox_process(session=session, process_id=process_id)
    return await get_backend().attach(str(session.uuid), process_id)


def sandbox_stop_sync(*, session: Session) -> bool:
    """:func:`sandbox_stop` for synchronous callers (session delete, admin actions)."""
    return async_to_sync(sandbox_stop)(session=session)

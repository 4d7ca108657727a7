"""``GET /health``: what is running and whether it works (no authentication; no secrets)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from runtime_project.modes import modules_status
from sandboxes.registry import get_backend
from sessions.choices import ACTIVE_STATUSES, SessionStatus


def _database() -> dict[str, Any]:
    from sessions.models import Session, Task

    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        counts = {
            "sessions_total": Session.objects.filter(deleted_at__isnull=True).count(),
            "sessions_active": Session.objects.filter(
                deleted_at__isnull=True, status=SessionStatus.ACTIVE
            ).count(),
            "tasks_active": Task.objects.filter(status__in=ACTIVE_STATUSES).count(),
            "tasks_queued": Task.objects.filter(status="queued").count(),
        }
    except Exception as exc:
        return {"ok": False, "vendor": connection.vendor, "error": type(exc).__name__}
    return {
        "ok": True,
        "vendor": connection.vendor,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        **counts,
    }


async def _channel_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    if layer is None:
        return {"ok": False, "backend": None}
    backend = f"{type(layer).__module__}.{type(layer).__name__}"
    started = time.perf_counter()
    try:
        channel = await layer.new_channel("health.")
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "health.ping", "token": token})
        message = await asyncio.wait_for(layer.receive(channel), 2)
        ok = message.get("token") == token
    except Exception as exc:
        return {"ok": False, "backend": backend, "error": type(exc).__name__}
    return {
        "ok": ok,
        "backend": backend,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }


async def health(request: HttpRequest) -> JsonResponse:
    """Status, mode, version, database, channel layer, sandbox tier, executor, sessions, and
    the server mode with the modules and features this process serves (``server``).

    503 when the database or channel layer fails or no sandbox can run tasks.
    """
    from sessions.executors.inline import _executor

    db = await sync_to_async(_database)()
    layer = await _channel_layer()
    caps = get_backend().capabilities()
    sessions_info = {k: db.pop(k) for k in list(db) if k.startswith(("sessions_", "tasks_"))}
    executor: dict[str, Any] = {"kind": settings.TASK_EXECUTOR}
    if settings.TASK_EXECUTOR == "inline" and _executor is not None:
        executor.update(_executor.stats())
    ok = db["ok"] and layer["ok"] and caps.available
    body = {
        "status": "ok" if ok else "degraded",
        "mode": "embedded" if settings.EMBEDDED else "scale-out",
        "version": settings.SERVER_VERSION,
        "database": db,
        "channel_layer": layer,
        "sandbox": {
            "backend": caps.backend,
            "tier": caps.tier,
            "isolated": caps.isolated,
            "available": caps.available,
            "reason": caps.reason,
            "details": dict(caps.details),
        },
        "executor": executor,
        "sessions": sessions_info,
        "server": modules_status(),
    }
    return JsonResponse(body, status=200 if ok else 503)

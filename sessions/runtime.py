"""Process start-up for the server: log the sandbox tier loudly and start the inline executor."""

from __future__ import annotations

import logging

from django.conf import settings

logger = logging.getLogger("runtime")


async def start_runtime() -> None:
    """Called once per server process on its event loop (see ``runtime_project.asgi``)."""
    from sandboxes.registry import get_backend
    from sessions.executors import get_executor
    from sessions.executors.threads import install_closing_pool

    # Streams' and runners' ORM calls run in the loop's pool (runtime_project.db): its threads
    # keep their connections, closed with the pool, also when no inline executor runs here.
    install_closing_pool()
    _install_drain()
    caps = get_backend().capabilities()
    if not caps.available:
        logger.error("sandbox UNAVAILABLE (%s): tasks will fail until this is fixed", caps.reason)
    elif not caps.isolated:
        logger.warning(
            "sandbox tier %s: commands run WITHOUT isolation (SANDBOX_ALLOW_UNISOLATED)", caps.tier
        )
    else:
        logger.info("sandbox backend %s, isolation tier %s", caps.backend, caps.tier)
    if settings.TASK_EXECUTOR != "celery":
        # Cron schedules: the server process fires them, except in scale-out, where beat does.
        # Several servers firing at once is safe: a tick is claimed by a unique row, once.
        import asyncio

        from schedules.scheduler import run_scheduler

        global _scheduler
        _scheduler = asyncio.get_running_loop().create_task(run_scheduler(asyncio.Event()))
        # Outbound webhooks: sent by this process too (Celery tasks + beat in scale-out).
        from integrations.webhooks.dispatch import run_dispatcher

        global _webhooks
        _webhooks = asyncio.get_running_loop().create_task(run_dispatcher(asyncio.Event()))
    if settings.TASK_EXECUTOR == "inline":
        await get_executor().start()
    elif settings.TASK_EXECUTOR == "celery":
        import asyncio

        global _sweeper
        _sweeper = asyncio.get_running_loop().create_task(_sweep_forever())
        logger.info("TASK_EXECUTOR=celery: tasks run in Celery workers (broker messages)")
    else:
        logger.info(
            "TASK_EXECUTOR=%s: tasks run in `manage.py run_worker` processes",
            settings.TASK_EXECUTOR,
        )


_sweeper = None
_drained = False
_scheduler = None
_webhooks = None


async def _sweep_forever() -> None:
    """Each web process also runs the celery executor's safety net (``sessions.dispatch.sweep``),
    so a deployment without beat still recovers lost workers and lost broker messages."""
    import asyncio

    from sessions.dispatch import sweep

    while True:
        await asyncio.sleep(max(settings.TASK_LEASE_S / 2, 1.0))
        try:
            await sweep()
        except Exception:
            logger.warning("sweep failed", exc_info=True)


async def drain_for_shutdown() -> None:
    """Before the server stops (SIGTERM): tell every WebSocket client to reconnect
    (``stream.reconnect``, close 1012), then let the inline executor's running tasks finish for
    up to ``TASK_DRAIN_S`` (the rest are handed back: requeued when retry-safe). SSE clients
    simply reconnect with ``Last-Event-ID`` when their stream ends. Idempotent; never raises
    (a failure is logged: the server stops anyway). Used under daphne (below) and by
    ``runtime_project.serve`` under uvicorn."""
    import asyncio

    from sessions.consumers import LIVE
    from sessions.executors import get_executor

    global _drained
    if _drained:
        return
    _drained = True
    try:
        streams = list(LIVE)
        logger.info("shutdown: telling %d stream(s) to reconnect, then stopping", len(streams))
        await asyncio.gather(*(c.drain() for c in streams), return_exceptions=True)
        if settings.TASK_EXECUTOR == "inline":
            await get_executor().stop(drain_s=settings.TASK_DRAIN_S)
    except Exception:
        logger.exception("draining on shutdown failed; stopping anyway")


def _install_drain() -> None:
    """Under daphne: on SIGTERM, :func:`drain_for_shutdown`, then stop the reactor. Other ASGI
    servers have their own shutdown (``runtime_project.serve`` drains under uvicorn)."""
    import asyncio
    import signal
    import sys

    if "twisted.internet.reactor" not in sys.modules:  # importing it would install a reactor
        return
    from twisted.internet import reactor

    if not getattr(reactor, "running", False):
        return
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task[None]] = []

    async def drain_and_stop() -> None:
        try:
            await drain_for_shutdown()
        finally:
            reactor.stop()  # type: ignore[attr-defined,misc]

    def on_term() -> None:
        if not draining:
            draining.append(loop.create_task(drain_and_stop()))
        else:  # a second signal: stop now
            reactor.stop()  # type: ignore[attr-defined,misc]

    loop.add_signal_handler(signal.SIGTERM, on_term)

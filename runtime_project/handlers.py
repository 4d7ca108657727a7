"""Django's ASGI handler, serving a synchronous view and the whole middleware stack in one
thread hop.

Under ASGI, Django runs its middleware chain in async mode, and each of the stock middlewares
(``MiddlewareMixin``: security, sessions, common, CSRF, authentication, messages, clickjacking,
Prometheus) hands its ``process_request`` and ``process_response`` to the request's thread
with ``sync_to_async``: about fifteen round trips between the event loop and that thread for
every request, before and after the one that runs the view. ``bench/request_path.py`` measures
both handlers side by side (``bench/RESULTS.md``, "request path": with one hop, a 404 took 0.43x
the server CPU and 0.70x the round trip of Django's handler).

:class:`ASGIHandler` builds Django's chain twice, once in each mode. A request whose view is a
plain function or a DRF ``APIView`` (nearly all of the API) runs the synchronous chain in a
single ``sync_to_async`` call on the request's thread-sensitive thread, exactly as under WSGI.
A request for an ``async def`` view (SSE streams, ``/oneshot``, ``/health``, the OpenAI,
ChatGPT and Alexa endpoints that wait for a task) keeps Django's async chain, so the view runs
on the event loop and does not hold a thread while it waits. Which chain serves a request
is decided by resolving its path first (``Resolver404``: the synchronous chain, which answers
404 or redirects to the slashed URL).

Request threads are reused (:class:`RequestThreads`). Django gives every request a
``ThreadSensitiveContext`` of its own, whose executor starts a new thread for the request's
synchronous code (and another one to join it at the end), and that thread opens a new database
connection, closed when the request ends: about 0.5 ms per request on SQLite here, 4.7 ms on
PostgreSQL. Here each request borrows an idle one-thread executor for its context instead
(asgiref's ``ThreadSensitiveContext(executor=…)``: one request at a time, all of its
thread-sensitive calls on that thread, as before), and a synchronous view's connection stays
open for the thread's next request (``CONN_HEALTH_CHECKS`` checks it first on PostgreSQL;
Django closes it as usual when it is unusable or in a transaction it should not be in).

A request answered with a stream (SSE events, a sandbox's output, an OpenAI-style answer) gives
its thread back as soon as the view has returned the response, connection and all: the body
reads the database through the loop's pool (``runtime_project.db.db_call``), and a stream may
last minutes (200 SSE clients used to pin 200 threads, or, closing their connections, made the
next request on each thread reconnect: 4.7 ms on PostgreSQL). Thread-sensitive calls the body
still makes (Django's ``response.close``, a sandbox stream's set-up) go to a one-thread executor
of the request's own, started only if one comes.

A synchronous view may defer work until its response has begun
(``runtime_project.after_response``: waking the executor for the task it queued).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler as DjangoASGIHandler
from django.core.handlers.base import BaseHandler
from django.db import connections
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, get_resolver

from integrations.endpoints.domains import route_agent_host
from runtime_project import after_response
from runtime_project.db import keep_connections_open


class RequestThreads:
    """Idle one-thread executors, lent to one request at a time (see the module docstring).

    :meth:`lease` returns one (a new one when none is idle); :meth:`give_back` keeps it for the
    next request, unless ``keep`` are idle already or it is still running something (a view
    whose client went away: the request ended, its thread did not), which then ends on its
    own. Used from the event loop's thread only."""

    def __init__(self, keep: int | None = None) -> None:
        self._keep = keep
        self.idle: list[_OneThread] = []

    @property
    def keep(self) -> int:
        """How many idle executors are kept (``ASGI_IDLE_THREADS`` unless given)."""
        return self._keep if self._keep is not None else int(settings.ASGI_IDLE_THREADS)

    def lease(self) -> _OneThread:
        return self.idle.pop() if self.idle else _OneThread()

    def give_back(self, executor: _OneThread) -> None:
        if executor.busy or len(self.idle) >= self.keep:
            self.discard(executor)
        else:
            self.idle.append(executor)

    @staticmethod
    def discard(executor: _OneThread) -> None:
        """End ``executor``'s thread once it has run what it was given, closing its database
        connections there (none when it never ran anything: no thread was started)."""
        if executor.used:
            executor.submit(connections.close_all)
        executor.shutdown(wait=False)


class _OneThread(concurrent.futures.ThreadPoolExecutor):
    """A one-thread executor that knows whether a call is still queued or running."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")
        self._pending = 0
        self._count_lock = threading.Lock()
        self.used = False

    @property
    def busy(self) -> bool:
        return self._pending > 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        with self._count_lock:
            self._pending += 1
            self.used = True
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: concurrent.futures.Future[Any]) -> None:
        with self._count_lock:
            self._pending -= 1


class _Lease:
    """The executor a request's thread-sensitive calls go to, and the context that routes them
    there (replaced when the request turns into a stream: :meth:`ASGIHandler._detach`)."""

    __slots__ = ("context", "deferred", "detached", "executor")

    def __init__(self, executor: _OneThread) -> None:
        self.executor = executor
        self.context = ThreadSensitiveContext(executor=executor)
        self.detached = False
        self.deferred: list[after_response.Call] = []  # started once the response has begun


_LEASE: ContextVar[_Lease] = ContextVar("request_thread_lease")


class ASGIHandler(DjangoASGIHandler):
    """``django.core.handlers.asgi.ASGIHandler`` with a one-hop path for synchronous views
    (see the module docstring). Everything else (request parsing, signals, streaming the
    response, disconnects) is Django's; each request's thread is borrowed from ``threads``."""

    threads = RequestThreads()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        lease = _Lease(self.threads.lease())
        token = _LEASE.set(lease)

        async def send_then_start(message: Mapping[str, Any]) -> None:
            await send(message)
            if lease.deferred:  # the response has begun (runtime_project.after_response)
                after_response.start(lease.deferred)

        try:
            async with lease.context:
                await self.handle(scope, receive, send_then_start)
        finally:
            _LEASE.reset(token)
            if lease.deferred:  # no response was sent (the client went away first)
                after_response.start(lease.deferred)
            if lease.detached:  # a stream's late thread, cold: not kept for the next request
                self.threads.discard(lease.executor)
            else:
                self.threads.give_back(lease.executor)

    def load_middleware(self, is_async: bool = False) -> None:
        # The synchronous chain lives in a handler of its own: a chain's view middleware
        # (``process_view``) is kept on the handler that built it, adapted to its mode.
        sync_handler = BaseHandler()
        sync_handler.load_middleware(is_async=False)
        self._sync_chain: Any = sync_handler._middleware_chain  # type: ignore[attr-defined]
        super().load_middleware(is_async=True)
        self._async_chain: Any = self._middleware_chain  # type: ignore[has-type]
        self._middleware_chain = self._serve

    async def _serve(self, request: HttpRequest) -> HttpResponseBase:
        if _view_is_async(request):
            response = await self._async_chain(request)
        else:
            lease = _LEASE.get(None)
            with after_response.deferring(lease.deferred if lease else []):
                response = await sync_to_async(self._sync_view, thread_sensitive=True)(request)
        if response.streaming:
            self._detach()
        return response  # type: ignore[no-any-return]

    def _detach(self) -> None:
        """Give the request's thread back now that its view has returned a stream; the rest of
        the request's thread-sensitive calls go to a new executor (module docstring)."""
        lease = _LEASE.get(None)
        if lease is None:  # served by another handler's __call__ (a test's)
            return
        spent, lease.executor = lease.executor, _OneThread()  # its thread starts when used
        lease.detached = True
        SyncToAsync.context_to_thread_executor[lease.context] = lease.executor
        self.threads.give_back(spent)

    def _sync_view(self, request: HttpRequest) -> HttpResponseBase:
        try:
            return self._sync_chain(request)  # type: ignore[no-any-return]
        finally:
            keep_connections_open()  # for this thread's next request (module docstring)


def _view_is_async(request: HttpRequest) -> bool:
    """Whether the view ``request`` resolves to is an ``async def`` (the agent domains'
    urlconf applies as ``AgentDomainMiddleware`` will apply it; the call is idempotent)."""
    route_agent_host(request)
    urlconf: Any = getattr(request, "urlconf", None) or settings.ROOT_URLCONF
    try:
        match = get_resolver(urlconf).resolve(request.path_info)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)

"""Serve the ASGI app (HTTP, WebSocket, SSE, admin, static files, ``/mcp``) on one or two ports.

``python -m runtime_project.serve --host H --port P [--admin-port A] [--server uvicorn|daphne]``

``uvicorn`` (the default: several times daphne's request rate here, bench/http_servers.py) runs one
uvicorn ``Server`` on uvloop + httptools + websockets with its lifespan on (which starts the
inline executor, the scheduler and the webhook dispatcher; ``runtime_project.asgi``). With
``--admin-port`` it listens on both ports from the same process and event loop: one server,
two bound sockets, so ``scope["server"]`` names the port a connection came in on and
``runtime_project.modes.admin_port_allows`` splits the admin from the rest as under daphne.

Shutdown (SIGTERM, or Ctrl+C): first ``sessions.runtime.drain_for_shutdown`` — every WebSocket
stream gets ``{"type": "stream.reconnect", "last_seq"}`` and close 1012, the inline executor
finishes its running tasks for up to ``TASK_DRAIN_S`` and hands back the rest — then uvicorn
stops: new connections are refused, requests in flight get ``SHUTDOWN_GRACE_S`` seconds, and
SSE streams still open after that are cut (their clients resume with ``Last-Event-ID``, as after
a daphne restart). A second signal stops at once.

Proxy headers are not trusted (``X-Forwarded-For``, ``X-Forwarded-Proto``), as under daphne:
uvicorn would otherwise believe them from 127.0.0.1, and the client address is what per-IP
throttling keys on (tests/api/test_limits.py).

``daphne`` execs daphne with the same ports (``-e tcp:port=A`` for the admin port); its SIGTERM
drain is installed by ``sessions.runtime``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

APP = "runtime_project.asgi:application"
SERVERS = ("uvicorn", "daphne")
SHUTDOWN_GRACE_S = 3.0
"""Seconds uvicorn waits, after the drain, for requests and SSE streams still open."""

logger = logging.getLogger("uvicorn.error")  # configured by uvicorn.Config, like its own lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime_project.serve", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    parser.add_argument(
        "--admin-port",
        type=int,
        default=int(os.environ["ADMIN_PORT"]) if os.environ.get("ADMIN_PORT") else None,
        help="serve the admin on this port only (default: $ADMIN_PORT)",
    )
    parser.add_argument(
        "--server", choices=SERVERS, default=os.environ.get("ASGI_SERVER") or "uvicorn"
    )
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info").lower())
    args = parser.parse_args(argv)
    if args.admin_port is not None and args.admin_port == args.port:
        parser.error("--admin-port must differ from --port")
    return args


def daphne_argv(host: str, port: int, admin_port: int | None) -> list[str]:
    """daphne's command line for the same ports."""
    argv = [sys.executable, "-m", "daphne", "-b", host, "-p", str(port)]
    if admin_port is not None:
        argv += ["-e", f"tcp:port={admin_port}:interface={host}"]
    return [*argv, APP]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(True)
    return sock


class EndStreamsOnShutdown:
    """ASGI middleware: once :meth:`end_streams` is called, every HTTP response that is still
    streaming (SSE: the response started and its body came with ``more_body``) is told the
    client left (``http.disconnect``, which Django turns into cancelling the stream), and is then
    ended cleanly here (the last, empty body chunk), so its client resumes with
    ``Last-Event-ID`` at once instead of uvicorn cutting it after its graceful timeout with a
    traceback. Other requests are passed through unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.stopping: asyncio.Event | None = None

    def end_streams(self) -> None:
        if self.stopping is None:
            self.stopping = asyncio.Event()
        self.stopping.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.stopping is None:
            self.stopping = asyncio.Event()  # created on the server's loop
        exchange = _Exchange(receive, send, self.stopping)
        await self.app(scope, exchange.receive, exchange.send)
        if exchange.cut and not exchange.complete:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Exchange:
    """One HTTP request's ``receive``/``send`` under :class:`EndStreamsOnShutdown`.

    ``real_send`` is the server's ``send``: ``sessions.outbox.transport_of`` unwraps it
    (as it unwraps channels' wrapper) to find the connection's transport."""

    def __init__(self, receive: Any, send: Any, stopping: asyncio.Event) -> None:
        self.real_receive, self.real_send, self.stopping = receive, send, stopping
        self.streaming = self.complete = self.cut = False

    async def receive(self) -> dict[str, Any]:
        if not self.cut:
            message = asyncio.ensure_future(self.real_receive())
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({message, stop}, return_when=asyncio.FIRST_COMPLETED)
            if message.done():
                stop.cancel()
                return message.result()  # type: ignore[no-any-return]
            message.cancel()
            if not self.streaming:  # an ordinary request in flight: let it finish
                return await self.real_receive()  # type: ignore[no-any-return]
            self.cut = True
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body"):
                self.streaming = True
            else:
                self.complete = True
        if not self.cut:
            await self.real_send(message)


def _uvicorn_server(host: str, port: int, log_level: str) -> Any:
    """A uvicorn ``Server`` whose SIGTERM/SIGINT first drain the app (see the module doc)."""
    import uvicorn

    class Server(uvicorn.Server):
        _draining: asyncio.Task[None] | None = None

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's own handlers set should_exit at once: its shutdown would close the
            # WebSockets (1012 without our stream.reconnect frame) before the app could drain.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
            try:
                yield
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

        def _on_signal(self, sig: int) -> None:
            if self._draining is None:
                logger.info("%s: draining, then stopping", signal.Signals(sig).name)
                self._draining = asyncio.get_running_loop().create_task(self._drain_then_exit())
            else:  # a second signal: stop now
                self.should_exit = self.force_exit = True

        async def _drain_then_exit(self) -> None:
            from sessions.runtime import drain_for_shutdown

            try:
                await drain_for_shutdown()
            finally:
                app.end_streams()
                self.should_exit = True

    from runtime_project.asgi import application

    app = EndStreamsOnShutdown(application)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        lifespan="on",
        proxy_headers=False,  # as daphne: the client address is the peer's (module doc)
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
    )
    return Server(config)


def serve_uvicorn(host: str, port: int, admin_port: int | None, log_level: str = "info") -> None:
    """Serve on ``host:port`` (and ``host:admin_port``) until SIGTERM/SIGINT; see the module doc.

    Raises:
        OSError: a port cannot be bound.
    """
    sockets = [_bind(host, port)]
    if admin_port is not None:
        sockets.append(_bind(host, admin_port))
    server = _uvicorn_server(host, port, log_level)  # configures logging
    for sock in sockets:
        logger.info("uvicorn listening on http://%s:%d", host, sock.getsockname()[1])
    server.run(sockets=sockets)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.admin_port is not None:
        # settings.ADMIN_PORT is what splits the admin from the API: it must name this port.
        os.environ["ADMIN_PORT"] = str(args.admin_port)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")
    if args.server == "daphne":
        argv = daphne_argv(args.host, args.port, args.admin_port)
        os.execv(argv[0], argv)  # noqa: S606 - daphne replaces this process: signals reach it
    serve_uvicorn(args.host, args.port, args.admin_port, args.log_level)


if __name__ == "__main__":
    main()

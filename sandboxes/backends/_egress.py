"""Egress allow-list for sandboxes without a network: an HTTP proxy outside the sandbox.

A sandbox with ``network="none"`` has its own network namespace with only loopback. When its
spec lists ``allow_hosts``, its supervisor (sbxd) also listens on ``127.0.0.1:3128`` inside
the sandbox and hands every accepted connection's file descriptor to the server over a unix
socket pair (``SCM_RIGHTS``); the sandbox's environment points ``HTTP_PROXY``/``HTTPS_PROXY``
(and the lower-case forms) there. This module is the server's end: a small HTTP proxy
(``CONNECT host:port`` for TLS, absolute-form requests for plain HTTP) that forwards only to
allowed ``host:port`` pairs, and only to public addresses unless
``SANDBOX_EGRESS_ALLOW_PRIVATE`` is set. The address checked is the address connected to, so
DNS rebinding cannot swap in a private one. Anything else (raw TCP, UDP, DNS) has no route out.

This is how hosted sandboxes do allow-lists (E2B ``network.allow_out``, Modal's and Daytona's
egress proxies, OpenAI Codex cloud's proxy); the sandbox needs no capability and no veth.

Rules (``parse_rules``): ``host:port``, ``host`` (ports 80 and 443), ``*.example.com[:port]``
(subdomains only), or an IP address ``[:port]``; hosts compare case-insensitively.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import re
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from runtime_project.exceptions import InvalidInput

logger = logging.getLogger(__name__)

PROXY_PORT = 3128  # inside the sandbox, on its own loopback
MAX_HEADER_BYTES = 16 * 1024
CONNECT_TIMEOUT_S = 10.0
HEADER_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 64  # concurrent, per sandbox
CHUNK_BYTES = 64 * 1024
_HOST = re.compile(r"^(\*\.)?([a-z0-9-]{1,63}\.)*[a-z0-9-]{1,63}$")


@dataclass(frozen=True)
class Rule:
    """One allowed destination: ``host`` (``*.`` prefix: any subdomain) and its ports."""

    host: str
    ports: tuple[int, ...]

    def allows(self, host: str, port: int) -> bool:
        if port not in self.ports:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host


def parse_rules(items: Iterable[str]) -> tuple[Rule, ...]:
    """Parse ``allow_hosts`` entries (see the module docstring).

    Raises:
        InvalidInput: an entry is not a host name, wildcard or IP with an optional port 1-65535
            (details ``{"allow_hosts": [entry]}``).
    """
    rules = []
    for raw in items:
        item = str(raw).strip().lower()
        host, port_text = item, ""
        if item.startswith("["):  # [v6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        elif item.count(":") == 1:
            host, port_text = item.split(":")
        host = host.rstrip(".")  # "pypi.org." is the same name as "pypi.org"
        try:
            ports = (int(port_text),) if port_text else (80, 443)
            ok = all(0 < p < 65536 for p in ports) and (_is_ip(host) or bool(_HOST.match(host)))
        except ValueError:
            ok = False
        if not ok:
            raise InvalidInput(
                "Invalid allow_hosts entry: use host, host:port, *.domain[:port] or ip[:port].",
                details={"allow_hosts": [str(raw)[:200]]},
            )
        rules.append(Rule(host, ports))
    return tuple(rules)


def proxy_env() -> dict[str, str]:
    """The environment that sends a sandbox's HTTP clients (curl, pip, npm, git, requests,
    httpx) through its supervisor's proxy port."""
    url = f"http://127.0.0.1:{PROXY_PORT}"
    env = {"NO_PROXY": "localhost,127.0.0.1,::1"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = url
    return {**env, **{k.lower(): v for k, v in env.items()}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Loop:
    """One daemon thread with an asyncio loop serving every sandbox's proxy in this process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="sandbox-egress", daemon=True).start()


_loop: _Loop | None = None
_loop_lock = threading.Lock()


def serve(
    channel: socket.socket, *, sandbox_id: str, rules: tuple[Rule, ...], allow_private: bool
) -> concurrent.futures.Future[None]:
    """Serve the proxy for one sandbox: connections arrive as fds on ``channel`` (our end of
    the socket pair whose other end sbxd holds). Runs until sbxd closes its end (the sandbox
    stopped). Takes ownership of ``channel``."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = _Loop()
    proxy = _Proxy(channel, sandbox_id, rules, allow_private)
    return asyncio.run_coroutine_threadsafe(proxy.run(), _loop.loop)


class _Proxy:
    def __init__(
        self, channel: socket.socket, sandbox_id: str, rules: tuple[Rule, ...], allow_private: bool
    ) -> None:
        self.channel = channel
        self.sandbox_id = sandbox_id
        self.rules = rules
        self.allow_private = allow_private
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        ready = asyncio.Event()
        loop.add_reader(self.channel.fileno(), ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                try:
                    data, fds, _, _ = socket.recv_fds(self.channel, 16, 16)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not data and not fds:
                    return  # sbxd is gone: the sandbox stopped
                for fd in fds:
                    task = asyncio.create_task(self._serve_fd(fd))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        finally:
            loop.remove_reader(self.channel.fileno())
            self.channel.close()
            for task in list(self.tasks):
                task.cancel()

    async def _serve_fd(self, fd: int) -> None:
        client = socket.socket(fileno=fd)
        client.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=client)
        try:
            if self.slots.locked():
                await _reply(writer, 503, "Too many connections from this sandbox.")
                return
            async with self.slots:
                await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            await _reply(writer, 431, "Request header too large.")
            return
        if len(head) > MAX_HEADER_BYTES:
            await _reply(writer, 431, "Request header too large.")
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            await _reply(writer, 400, "Malformed request line.")
            return
        method, target, version = parts
        connect = method.upper() == "CONNECT"
        parsed = _target(target, connect)
        if parsed is None:
            await _reply(writer, 400, "Use CONNECT host:port or an absolute http:// URL.")
            return
        host, port, path = parsed
        if not any(rule.allows(host, port) for rule in self.rules):
            logger.info(
                "sandbox %s: egress to %s:%s refused (not allowed)", self.sandbox_id, host, port
            )
            await _reply(writer, 403, f"{host}:{port} is not in this sandbox's allow_hosts.")
            return
        address = await self._resolve(host, port)
        if address is None:
            logger.info(
                "sandbox %s: egress to %s:%s refused (address)", self.sandbox_id, host, port
            )
            await _reply(writer, 403, f"{host} does not resolve to an allowed public address.")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(address, port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            await _reply(writer, 502, f"Cannot connect to {host}:{port}.")
            return
        try:
            if connect:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                up_writer.write(_rewrite(method, path, version, lines[1:]))
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    def _refused(self, host: str, port: int, why: str) -> None:
        logger.info("sandbox %s: egress to %s:%s refused (%s)", self.sandbox_id, host, port, why)

    async def _resolve(self, host: str, port: int) -> str | None:
        """The first address of ``host`` we may connect to (public unless allowed), or None."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError):
            return None
        for *_, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if self.allow_private or ip.is_global:
                return str(ip)
        return None


def _target(target: str, connect: bool) -> tuple[str, int, str] | None:
    """``(host, port, path)`` of a CONNECT authority or an absolute ``http://`` URL."""
    if connect:
        authority, path, default = target, "", 0
    else:
        if not target.lower().startswith("http://"):
            return None
        rest = target[len("http://") :]
        authority, slash, tail = rest.partition("/")
        path, default = slash + tail or "/", 80
    if "@" in authority:
        return None  # credentials in the URL: never forwarded
    if authority.startswith("["):
        host, _, port_text = authority[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = authority.partition(":")
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        return None
    host = host.lower().rstrip(".")
    if not host or not 0 < port < 65536:
        return None
    return host, port, path


def _rewrite(method: str, path: str, version: str, headers: list[str]) -> bytes:
    kept = [
        h
        for h in headers
        if h
        and h.split(":", 1)[0].strip().lower()
        not in ("proxy-connection", "proxy-authorization", "connection", "keep-alive")
    ]
    # One request per connection: a second request on it could name another host.
    lines = [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        pass


async def _reply(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reasons = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large",
               502: "Bad Gateway", 503: "Service Unavailable"}  # fmt: skip
    body = (message + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {reasons[status]}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()

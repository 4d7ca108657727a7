"""The egress allow-list of a bubblewrap sandbox: only listed host:port pairs are reachable, and
only through the sandbox's HTTP proxy (plain HTTP and CONNECT); everything else stays cut off.

The target is an HTTP server on this host's own non-loopback address, which is not a public
address, so the positive cases set ``SANDBOX_EGRESS_ALLOW_PRIVATE`` and one case checks that
without it the proxy refuses."""

from __future__ import annotations

import dataclasses
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from runtime_project.exceptions import InvalidInput
from sandboxes.backends._egress import parse_rules
from sandboxes.backends.local import LocalBackend
from tests.sandboxes.helpers import collect, spec_for

pytestmark = pytest.mark.sandbox

CLIENT = r"""
import json, socket, sys, urllib.error, urllib.request
results = {}
for name, url in (("allowed", sys.argv[1]), ("other_port", sys.argv[2])):
    try:
        results[name] = urllib.request.urlopen(url, timeout=10).read().decode()
    except urllib.error.HTTPError as e:
        results[name] = f"HTTP {e.code}: {e.read().decode().strip()}"
# CONNECT tunnel (what HTTPS clients do), then a request through it
host, port = sys.argv[3], int(sys.argv[4])
s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
reply = s.recv(4096).decode()
results["connect"] = reply.split("\r\n")[0]
if " 200 " in reply:
    s.sendall(f"GET /tunnel HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    results["tunnel"] = b"".join(iter(lambda: s.recv(4096), b"")).decode().split("\r\n\r\n")[-1]
# no way around the proxy
try:
    socket.create_connection((host, port), timeout=3)
    results["direct"] = "connected"
except OSError as e:
    results["direct"] = type(e).__name__
print(json.dumps(results))
"""


def host_address() -> str:
    """This host's non-loopback IPv4 address (the sandbox cannot reach it directly)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: picks the outgoing address
        return str(probe.getsockname()[0])
    finally:
        probe.close()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_servers() -> Iterator[tuple[str, int, int]]:
    """Two HTTP servers on the host address: ``(address, allowed port, other port)``."""
    address = host_address()
    servers = [http.server.ThreadingHTTPServer((address, 0), _Hello) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield address, servers[0].server_address[1], servers[1].server_address[1]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


async def _run_client(
    backend: LocalBackend, workspace: Path, address: str, port: int, other: int
) -> dict[str, str]:
    spec = dataclasses.replace(spec_for(workspace), allow_hosts=(f"{address}:{port}",))
    argv = [
        "python3", "-c", CLIENT, f"http://{address}:{port}/plain",
        f"http://{address}:{other}/x", address, str(port),
    ]  # fmt: skip
    try:
        out, err, exit_event = await collect(await backend.exec(spec, argv))
    finally:
        await backend.stop(spec.sandbox_id)
    assert exit_event.exit_code == 0, err
    result: dict[str, str] = json.loads(out)
    return result


async def test_allowed_host_is_reachable_through_the_proxy_and_nothing_else(
    backend: LocalBackend, workspace: Path, http_servers: tuple[str, int, int]
) -> None:
    address, port, other = http_servers
    with override_settings(SANDBOX_EGRESS_ALLOW_PRIVATE=True):
        got = await _run_client(backend, workspace, address, port, other)
    assert got["allowed"] == "hello /plain"
    assert got["other_port"] == f"HTTP 403: {address}:{other} is not in this sandbox's allow_hosts."
    assert got["connect"] == "HTTP/1.1 200 Connection established"
    assert got["tunnel"] == "hello /tunnel"
    assert got["direct"] == "OSError"  # ENETUNREACH: the sandbox has only its loopback


async def test_private_addresses_are_refused_by_default(
    backend: LocalBackend, workspace: Path, http_servers: tuple[str, int, int]
) -> None:
    address, port, other = http_servers
    got = await _run_client(backend, workspace, address, port, other)
    refused = f"HTTP 403: {address} does not resolve to an allowed public address."
    assert got["allowed"] == refused
    assert got["connect"] == "HTTP/1.1 403 Forbidden"
    assert "tunnel" not in got


async def test_without_allow_hosts_there_is_no_proxy(
    backend: LocalBackend, workspace: Path
) -> None:
    script = "import os, socket\nprint(os.environ.get('HTTP_PROXY'))\n" + (
        "try:\n socket.create_connection(('127.0.0.1', 3128), timeout=3); print('open')\n"
        "except OSError as e: print(type(e).__name__)\n"
    )
    out, err, exit_event = await collect(
        await backend.exec(spec_for(workspace), ["python3", "-c", script])
    )
    assert exit_event.exit_code == 0, err
    assert out.decode().split() == ["None", "ConnectionRefusedError"]
    await backend.stop("t")


@pytest.mark.parametrize(
    ("entry", "host", "port", "allowed"),
    [
        ("pypi.org", "pypi.org", 443, True),
        ("pypi.org", "pypi.org", 22, False),
        ("PyPI.org.:8443", "pypi.org", 8443, True),
        ("*.github.com:443", "api.github.com", 443, True),
        ("*.github.com:443", "github.com", 443, False),
        ("*.github.com:443", "evilgithub.com", 443, False),
        ("10.0.0.5:5000", "10.0.0.5", 5000, True),
        ("[::1]:8080", "::1", 8080, True),
    ],
)
def test_allow_rules(entry: str, host: str, port: int, allowed: bool) -> None:
    (rule,) = parse_rules([entry])
    assert rule.allows(host, port) is allowed


@pytest.mark.parametrize("entry", ["", "a b", "host:0", "host:70000", "http://x", "*:443", "a:b:c"])
def test_bad_allow_entries_are_refused(entry: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_rules([entry])
    assert caught.value.details == {"allow_hosts": [entry]}

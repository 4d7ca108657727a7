"""Outbound HTTP refuses private addresses (runtime_project/outbound.py), against real servers.

A ``http.server`` in a thread on 127.0.0.1 (and one on ::1, and an https one with a test CA)
records every request it receives, so "refused" also means "no request reached the server".
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from runtime_project import outbound
from runtime_project.exceptions import InvalidInput, OutboundFailed, OutboundRefused
from runtime_project.outbound import check_url, fetch

BIG = 3 * 1024 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, family: socket.AddressFamily = socket.AF_INET) -> None:
        self.address_family = family
        super().__init__((host, 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.scheme = "http"
        self.sni: list[str | None] = []
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (a timeout, a truncated body)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str | None = None) -> str:
        if host is None:
            address = str(self.server_address[0])
            host = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(
        self, status: int, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        seen = {
            "method": self.command,
            "path": url.path,
            "host": self.headers.get("Host"),
            "authorization": self.headers.get("Authorization"),
            "x-keep": self.headers.get("X-Keep"),
            "body": body.decode(),
        }
        self.server.requests.append(seen)
        if url.path == "/small":
            cookies = (("Set-Cookie", "sid=1"), ("Set-Cookie", "other=2"))
            self._reply(
                200, b"hello", (("Content-Type", "text/plain"), ("X-Custom", "yes"), *cookies)
            )
        elif url.path == "/big":
            self._reply(200, b"x" * BIG, (("Content-Type", "application/octet-stream"),))
        elif url.path == "/slow":
            self.server.stop.wait(10)
            self._reply(200, b"late")
        elif url.path == "/echo":
            self._reply(200, json.dumps(seen).encode(), (("Content-Type", "application/json"),))
        elif url.path == "/redirect":
            self._reply(int(query.get("status", "302")), b"", (("Location", query["to"]),))
        elif url.path.startswith("/chain/"):
            left = int(url.path.rsplit("/", 1)[1])
            if left:
                self._reply(302, b"", (("Location", f"/chain/{left - 1}"),))
            else:
                self._reply(200, b"end")
        else:
            self._reply(404, b"")

    do_GET = do_POST = do_HEAD = _handle


def _start(server: _Server) -> Iterator[_Server]:
    server.thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _start(_Server("127.0.0.1"))


@pytest.fixture
def server6() -> Iterator[_Server]:
    try:
        srv = _Server("::1", socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    yield from _start(srv)


def _redirect(server: _Server, to: str, status: int = 302) -> str:
    return server.url(f"/redirect?status={status}&to={quote(to, safe='')}")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# REFUSED BY DEFAULT ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/small", "loopback"),
        ("http://localhost:{port}/small", "loopback"),
        ("http://2130706433:{port}/small", "loopback"),
        ("http://0x7f.1:{port}/small", "loopback"),
        ("http://127.1:{port}/small", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/small", "loopback"),
        ("http://0.0.0.0:{port}/small", "unspecified"),
        ("http://[::1]:{port}/small", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link_local"),
        ("http://100.64.0.1/", "shared"),
    ],
)
async def test_private_addresses_are_refused_before_any_request(
    server: _Server, url: str, reason: str
) -> None:
    with pytest.raises(OutboundRefused) as info:
        await fetch(url.format(port=server.port))
    err = info.value
    assert err.code == "outbound_refused" and err.status_code == 400
    assert err.as_dict()["error"]["code"] == "outbound_refused"
    assert err.details["reason"] == reason
    assert ipaddress.ip_address(err.details["address"]).version in (4, 6)
    assert server.requests == []


async def test_ipv6_loopback_refused_before_any_request(server6: _Server) -> None:
    with pytest.raises(OutboundRefused) as info:
        await fetch(server6.url("/small"))
    assert info.value.details == {"host": "::1", "address": "::1", "reason": "loopback"}
    assert server6.requests == []
    result = await fetch(server6.url("/small"), allow_hosts=["::1/128"])
    assert result.body == b"hello"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::]/", "unspecified"),
        ("http://[fe80::1]/", "link_local"),
        ("http://[fc00::1]/", "unique_local"),
        ("http://[fec0::1]/", "unique_local"),  # deprecated site-local
        ("http://[64:ff9b:1::1]/", "unique_local"),  # local-use NAT64
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link_local"),  # NAT64 form of 169.254.169.254
        ("http://[::ffff:0:7f00:1]/", "loopback"),  # IPv4-translated 127.0.0.1
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
        ("http://[::ffff:10.1.2.3]/", "private"),
    ],
)
def test_check_url_refuses_every_non_public_kind(url: str, reason: str) -> None:
    with pytest.raises(OutboundRefused) as info:
        check_url(url)
    assert info.value.details["reason"] == reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme"),
        ("ftp://8.8.8.8/pub", "scheme"),
        ("gopher://8.8.8.8/", "scheme"),
        ("http://user:pw@8.8.8.8/", "userinfo"),
        ("http:///path", "no_host"),
        ("http://8.8.8.8:70000/", "invalid_url"),
        ("http://nonexistent.invalid/", "unresolvable"),
    ],
)
async def test_bad_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(OutboundRefused) as info:
        await fetch(url)
    assert info.value.details["reason"] == reason
    with pytest.raises(OutboundRefused):
        check_url(url)


def test_check_url_returns_public_addresses_normalised() -> None:
    """Sync: what an agent spec's validation calls at save time."""
    assert check_url("http://8.8.8.8/") == [ipaddress.ip_address("8.8.8.8")]
    assert check_url("https://[::ffff:8.8.8.8]:8443/x") == [ipaddress.ip_address("8.8.8.8")]
    v6 = "2001:4860:4860::8888"
    assert check_url(f"http://[{v6}]/") == [ipaddress.ip_address(v6)]
    assert check_url("http://[64:ff9b::808:808]/") == [ipaddress.ip_address("64:ff9b::808:808")]


def test_allow_list_entries() -> None:
    assert check_url("http://127.0.0.1/", allow_hosts=["127.0.0.0/8"])
    assert check_url("http://10.9.8.7/", allow_hosts=["10.0.0.0/8"])
    assert check_url("http://localhost/", allow_hosts=["LOCALHOST."])
    assert check_url("http://[::1]/", allow_hosts=["[::1]"])
    with pytest.raises(OutboundRefused):
        check_url("http://10.9.8.7/", allow_hosts=["10.0.0.0/16", "127.0.0.1"])
    names, _ = outbound._allow_list(["*.corp.example", "API.example."])
    assert outbound._host_allowed("a.b.corp.example", names)
    assert outbound._host_allowed("api.example", names)
    assert not outbound._host_allowed("corp.example", names)
    assert not outbound._host_allowed("evilcorp.example", names)
    with pytest.raises(InvalidInput):
        check_url("http://8.8.8.8/", allow_hosts=["10.0.0.0/33"])


def test_a_malformed_allowed_network_stops_the_server() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {"OUTBOUND_ALLOWED_HOSTS": "localhost,10.0.0.0/33", "SECRET_KEY": "k" * 50}
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "OUTBOUND_ALLOWED_HOSTS: '10.0.0.0/33' is not a valid CIDR network" in result.stderr


# ALLOWED ---------------------------------------------------------------------------------------


async def test_allowed_with_allow_hosts(server: _Server) -> None:
    result = await fetch(server.url("/small"), allow_hosts=["127.0.0.1"])
    assert result.status == 200
    assert result.body == b"hello" and not result.truncated
    assert result.content_type == "text/plain"
    assert result.url == server.url("/small")
    assert result.headers["x-custom"] == "yes"
    assert "set-cookie" not in result.headers
    assert server.paths() == ["/small"]


async def test_allowed_with_the_setting(server: _Server, settings: Any) -> None:
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1/32"]
    result = await fetch(server.url("/small"))
    assert result.body == b"hello"
    settings.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    assert (await fetch(server.url("/small", host="localhost"))).status == 200
    settings.OUTBOUND_ALLOWED_HOSTS = []
    with pytest.raises(OutboundRefused):
        await fetch(server.url("/small"))
    assert len(server.requests) == 2


async def test_connection_pinned_to_checked_address_with_real_host_header(
    server: _Server,
) -> None:
    """The server listens on 127.0.0.1 only and sees ``Host: localhost:<port>``."""
    result = await fetch(
        server.url("/echo", host="localhost"),
        allow_hosts=["localhost"],
        headers={"Host": "evil.example", "Authorization": "Bearer s3cret"},
    )
    seen = json.loads(result.body)
    assert seen["host"] == f"localhost:{server.port}"
    assert seen["authorization"] == "Bearer s3cret"
    assert "s3cret" not in repr(result.headers)  # request headers are never returned


async def test_connection_goes_to_the_checked_address_without_a_second_lookup(
    server: _Server,
) -> None:
    """DNS rebinding: once checked, the name is not looked up again (``.invalid`` never
    resolves, yet the request reaches the checked 127.0.0.1 with the name as ``Host``)."""
    hop = outbound._Hop(httpx.URL(f"http://rebind.invalid:{server.port}/echo"), "GET", {}, None)
    async with outbound._client(5.0) as client:
        response = await hop.send(client, [ipaddress.ip_address("127.0.0.1")])
        await response.aread()
        await response.aclose()
    assert json.loads(response.content)["host"] == f"rebind.invalid:{server.port}"


async def test_method_and_body(server: _Server) -> None:
    result = await fetch(
        server.url("/echo"), method="post", body=b"payload", allow_hosts=["127.0.0.1"]
    )
    seen = json.loads(result.body)
    assert (seen["method"], seen["body"]) == ("POST", "payload")
    head = await fetch(server.url("/small"), method="HEAD", allow_hosts=["127.0.0.1"])
    assert head.status == 200 and head.body == b""


# SIZE AND TIME ---------------------------------------------------------------------------------


async def test_body_cut_at_max_bytes(server: _Server) -> None:
    allow = ["127.0.0.1"]
    result = await fetch(server.url("/big"), allow_hosts=allow)
    assert len(result.body) == 1_000_000 and result.truncated
    small = await fetch(server.url("/big"), max_bytes=12345, allow_hosts=allow)
    assert len(small.body) == 12345 and small.truncated
    exact = await fetch(server.url("/small"), max_bytes=5, allow_hosts=allow)
    assert exact.body == b"hello" and not exact.truncated
    cut = await fetch(server.url("/small"), max_bytes=4, allow_hosts=allow)
    assert cut.body == b"hell" and cut.truncated
    whole = await fetch(server.url("/big"), max_bytes=BIG, allow_hosts=allow)
    assert len(whole.body) == BIG and not whole.truncated


async def test_timeout_is_bounded(server: _Server) -> None:
    started = time.monotonic()
    with pytest.raises(OutboundFailed) as info:
        await fetch(server.url("/slow"), timeout_s=0.5, allow_hosts=["127.0.0.1"])
    assert time.monotonic() - started < 2.5
    err = info.value
    assert err.code == "outbound_failed" and err.status_code == 502
    assert err.details["reason"] == "timeout"
    assert "0.5 s" in err.message


async def test_connection_refused_fails(server: _Server) -> None:
    with pytest.raises(OutboundFailed) as info:
        await fetch(f"http://127.0.0.1:{_closed_port()}/", allow_hosts=["127.0.0.1"])
    assert info.value.details == {"host": "127.0.0.1", "reason": "connect"}


async def test_bad_arguments() -> None:
    for bad in ({"timeout_s": 0}, {"max_bytes": -1}, {"max_redirects": -1}):
        with pytest.raises(ValueError):
            await fetch("http://8.8.8.8/", **bad)  # type: ignore[arg-type]


# REDIRECTS -------------------------------------------------------------------------------------


async def test_redirect_followed(server: _Server) -> None:
    result = await fetch(_redirect(server, "/small"), allow_hosts=["127.0.0.1"])
    assert result.status == 200 and result.body == b"hello"
    assert result.url == server.url("/small")
    assert server.paths() == ["/redirect", "/small"]


async def test_redirect_chain_limit(server: _Server) -> None:
    allow = ["127.0.0.1"]
    result = await fetch(server.url("/chain/5"), max_redirects=5, allow_hosts=allow)
    assert result.body == b"end" and result.url == server.url("/chain/0")
    server.requests.clear()
    with pytest.raises(OutboundFailed) as info:
        await fetch(server.url("/chain/6"), max_redirects=5, allow_hosts=allow)
    assert info.value.details["reason"] == "too_many_redirects"
    assert len(server.requests) == 6  # the 7th hop is never requested
    with pytest.raises(OutboundFailed):
        await fetch(server.url("/chain/1"), max_redirects=0, allow_hosts=allow)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://10.0.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link_local"),
        ("file:///etc/passwd", "scheme"),
    ],
)
async def test_redirect_to_refused_address_is_refused(
    server: _Server, target: str, reason: str
) -> None:
    with pytest.raises(OutboundRefused) as info:
        await fetch(_redirect(server, target), allow_hosts=["127.0.0.1"])
    assert info.value.details["reason"] == reason
    assert server.paths() == ["/redirect"]


async def test_redirect_to_ipv6_loopback_refused(server: _Server, server6: _Server) -> None:
    with pytest.raises(OutboundRefused) as info:
        await fetch(_redirect(server, server6.url("/small")), allow_hosts=["127.0.0.1"])
    assert info.value.details["address"] == "::1"
    assert server.paths() == ["/redirect"] and server6.requests == []


async def test_redirect_method_rules(server: _Server) -> None:
    allow = ["127.0.0.1"]
    for status, expected in ((303, ("GET", "")), (302, ("GET", "")), (307, ("POST", "data"))):
        result = await fetch(
            _redirect(server, "/echo", status), method="POST", body=b"data", allow_hosts=allow
        )
        seen = json.loads(result.body)
        assert (seen["method"], seen["body"]) == expected, status


async def test_cross_origin_redirect_drops_credentials(server: _Server) -> None:
    allow = ["127.0.0.1", "localhost"]
    headers = {"Authorization": "Bearer s3cret", "X-Keep": "1"}
    same = await fetch(_redirect(server, "/echo"), headers=headers, allow_hosts=allow)
    assert json.loads(same.body)["authorization"] == "Bearer s3cret"
    other = server.url("/echo", host="localhost")
    cross = await fetch(_redirect(server, other), headers=headers, allow_hosts=allow)
    seen = json.loads(cross.body)
    assert seen["authorization"] is None and seen["x-keep"] == "1"
    assert seen["host"] == f"localhost:{server.port}"


# TLS -------------------------------------------------------------------------------------------


def _certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for ``localhost`` only (no IP address): (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outbound test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    """An https server on 127.0.0.1 with a ``localhost`` certificate from a CA the client trusts
    (through ``SSL_CERT_FILE``, which httpx's default context honours)."""
    ca, cert, key = _certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    outbound._ssl_context.cache_clear()
    srv = _Server("127.0.0.1")
    srv.scheme = "https"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: srv.sni.append(name)  # type: ignore[assignment,func-returns-value]
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    try:
        yield from _start(srv)
    finally:
        outbound._ssl_context.cache_clear()


async def test_tls_verified_against_hostname_not_pinned_ip(tls_server: _Server) -> None:
    """Connected to 127.0.0.1 (pinned), yet SNI and the certificate check use ``localhost``: the
    certificate names no IP, so checking it against the IP would fail."""
    result = await fetch(tls_server.url("/echo", host="localhost"), allow_hosts=["localhost"])
    assert json.loads(result.body)["host"] == f"localhost:{tls_server.port}"
    assert tls_server.sni == ["localhost"]


async def test_tls_certificate_mismatch_fails(tls_server: _Server) -> None:
    with pytest.raises(OutboundFailed) as info:
        await fetch(tls_server.url("/small"), allow_hosts=["127.0.0.1"])
    assert info.value.details == {"host": "127.0.0.1", "reason": "tls"}
    assert tls_server.requests == []

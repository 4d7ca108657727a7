"""Outbound HTTP made on a user's behalf, refusing private addresses (SSRF protection).

House rule: every request the server makes for a user (the agent's ``http_fetch`` tool, MCP server
URLs, model endpoints) goes through :func:`check_url` or :func:`fetch`. After the OWASP SSRF
Prevention Cheat Sheet: only ``http``/``https``; the host is resolved and *every* address it
resolves to must be public (numeric forms such as ``2130706433`` or ``0x7f.1`` are resolved first,
so they are caught); each redirect is re-checked; and the connection goes to the address that was
checked, so a DNS rebinding between check and use cannot move it. Source:
https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html

The exceptions are ``settings.OUTBOUND_ALLOWED_HOSTS`` and a caller's ``allow_hosts``: hostnames
(exact, or ``*.example.com`` for its subdomains; ASCII/punycode) or IPs / CIDR networks
(``127.0.0.1``, ``10.0.0.0/8``, ``::1``).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
from django.conf import settings

from runtime_project.exceptions import InvalidInput, OutboundFailed, OutboundRefused

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
# RFC 4193 unique-local, deprecated site-local, RFC 8215 local-use NAT64
_LOCAL_V6 = tuple(map(ipaddress.IPv6Network, ("fc00::/7", "fec0::/10", "64:ff9b:1::/48")))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
_DROP_CROSS_ORIGIN = frozenset({"authorization", "proxy-authorization", "cookie"})
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})
_DROP_RESPONSE = frozenset({"set-cookie", "set-cookie2"})


@dataclass(frozen=True)
class FetchResult:
    """A response: ``status`` (HTTP code), ``headers`` (lower-case names, repeated headers joined
    with ``", "``, never ``set-cookie``), ``body`` (at most ``max_bytes``, content-decoded),
    ``truncated`` (the body was longer), ``url`` (the final URL after redirects) and
    ``content_type`` (the ``content-type`` header, ``""`` if absent)."""

    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool
    url: str
    content_type: str


def _refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address (``"loopback"``, ``"private"``, ...), or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip in _NAT64:  # DNS64 on an IPv6-only network: as public as the IPv4 it stands for
            return _refusal(low32)
        embedded = low32 if ip in _TRANSLATED else ip.sixtofour
        if embedded is not None and (why := _refusal(embedded)):
            return why
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link_local", ip.is_link_local),  # includes the metadata address 169.254.169.254
        ("multicast", ip.is_multicast),
        ("shared", ip in _SHARED),
        ("unique_local", any(ip in network for network in _LOCAL_V6)),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not_global", not ip.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def _address(text: str) -> IPAddress:
    """An address from ``getaddrinfo``, without a zone id; ``::ffff:a.b.c.d`` becomes IPv4."""
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _allow_list(allow_hosts: Sequence[str]) -> tuple[set[str], list[IPNetwork]]:
    """``allow_hosts`` plus the setting, as (host names and ``*.`` patterns, networks)."""
    names: set[str] = set()
    networks: list[IPNetwork] = []
    setting = getattr(settings, "OUTBOUND_ALLOWED_HOSTS", ())
    for source, entries in (("allow_hosts", allow_hosts), ("OUTBOUND_ALLOWED_HOSTS", setting)):
        for raw in entries:
            entry = raw.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if "/" in entry:
                    raise InvalidInput(
                        f"{source}: {raw!r} is not a valid CIDR network.",
                        details={"field": source, "entry": raw},
                    ) from None
                names.add(entry)
    return names, networks


def _host_allowed(host: str, names: set[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == n or (n.startswith("*.") and host.endswith(n[1:])) for n in names if n)


def _host(url: httpx.URL) -> str:
    return url.raw_host.decode("ascii")  # IDNA-encoded; an IPv6 literal without brackets


def _refused(host: str, reason: str, message: str, address: str | None = None) -> OutboundRefused:
    logger.info("outbound request to %r refused (%s, address %s)", host, reason, address)
    return OutboundRefused(message, details={"host": host, "address": address, "reason": reason})


def _parse(url: str) -> httpx.URL:
    """``url`` as httpx will send it; OutboundRefused unless it is an http(s) URL with a host."""
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise _refused("", "invalid_url", "The URL is not valid.") from None
    host = _host(target)
    if target.scheme not in ("http", "https"):
        raise _refused(host, "scheme", "Only http and https URLs are allowed.")
    if target.userinfo:
        raise _refused(host, "userinfo", "URLs with credentials (user:password@) are refused.")
    if not host:
        raise _refused(host, "no_host", "The URL has no host.")
    if target.port is not None and not 0 < target.port < 65536:
        raise _refused(host, "invalid_url", "The URL's port is not valid.")
    return target


def _check(target: httpx.URL, allow_hosts: Sequence[str]) -> list[IPAddress]:
    host = _host(target)
    names, networks = _allow_list(allow_hosts)
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    addresses = list(dict.fromkeys(_address(str(info[4][0])) for info in infos))
    if not addresses:
        raise _refused(host, "unresolvable", f"The host {host} does not resolve.")
    if _host_allowed(host, names):
        return addresses
    for ip in addresses:
        reason = _refusal(ip)
        if reason and not any(ip in network for network in networks):
            kind = reason.replace("_", "-")
            message = f"Requests to {host} are refused: it resolves to {ip} ({kind}), not public."
            raise _refused(host, reason, message, str(ip))
    return addresses


def check_url(url: str, *, allow_hosts: Sequence[str] = ()) -> list[IPAddress]:
    """Check that ``url`` may be fetched for a user; return the addresses its host resolves to.

    Sync (it calls the blocking ``socket.getaddrinfo``): use it as is to validate an agent spec
    at save time; async code should use :func:`fetch`, which runs it in a thread.

    Args:
        url: an absolute ``http``/``https`` URL, without ``user:password@``.
        allow_hosts: extra allow-list entries (hostnames, ``*.suffix``, IPs or CIDR networks),
            added to ``settings.OUTBOUND_ALLOWED_HOSTS``.

    Returns:
        Every distinct address of the host, in ``getaddrinfo`` order (IPv4-mapped IPv6 addresses
        as IPv4), all public or allowed.

    Raises:
        OutboundRefused: details ``{"host", "address", "reason"}``; ``reason`` is ``invalid_url``,
            ``scheme``, ``userinfo``, ``no_host``, ``unresolvable`` (address None) or the kind of
            the first refused address: ``loopback``, ``private``, ``link_local``,
            ``unique_local``, ``multicast``, ``reserved``, ``unspecified``, ``shared``,
            ``not_global``.
        InvalidInput: an allow-list entry with a ``/`` is not a CIDR network.
    """
    return _check(_parse(url), allow_hosts)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # httpx's default (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), verifying hostnames; built once.
    return httpx.create_ssl_context()


def _client(timeout_s: float) -> httpx.AsyncClient:
    # A new client (connection pool) per hop: a pooled connection is keyed by IP and port only,
    # so reusing one for another hostname on the same IP would skip that name's TLS check.
    # trust_env=False: an HTTP(S)_PROXY would resolve the name itself and undo the pinning.
    # Cookies are never stored, so none travels from one hop to the next.
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        verify=_ssl_context(),
        timeout=httpx.Timeout(timeout_s),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


def _origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    return url.scheme, url.raw_host, url.port


def _tls_failure(exc: BaseException | None) -> bool:
    while exc is not None and not isinstance(exc, ssl.SSLError):
        exc = exc.__cause__ or exc.__context__
    return exc is not None


@dataclass(frozen=True)
class _Hop:
    """One request of a redirect chain, with the URL as named (never the pinned IP)."""

    url: httpx.URL
    method: str
    headers: dict[str, str]
    body: bytes | None

    async def send(self, client: httpx.AsyncClient, addresses: list[IPAddress]) -> httpx.Response:
        """Send to the checked addresses in turn (the next on a connection error), never by name.

        Pinning: the request URL names the checked IP, so httpx does no DNS lookup of its own;
        the ``Host`` header carries the real host, and for https the ``sni_hostname`` extension
        makes httpcore pass the real host as ``server_hostname`` to ``SSLContext.wrap_socket``,
        which both sends it as SNI and verifies the certificate against it (``check_hostname``),
        not against the IP.
        """
        host = _host(self.url)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        headers["Host"] = self.url.netloc.decode("ascii")
        extensions = {"sni_hostname": host} if self.url.scheme == "https" else {}
        error: httpx.ConnectError | None = None
        for ip in addresses:
            pinned = self.url.copy_with(host=str(ip))
            request = client.build_request(
                self.method, pinned, headers=headers, content=self.body, extensions=extensions
            )
            try:
                return await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                error = exc
        tls = _tls_failure(error)
        message = "TLS verification failed for" if tls else "Cannot connect to"
        details = {"host": host, "reason": "tls" if tls else "connect"}
        raise OutboundFailed(f"{message} {host}.", details=details) from error

    def redirected(self, status: int, location: str) -> _Hop:
        """The request a redirect asks for (method and header rules as browsers and httpx)."""
        try:
            url = _parse(str(self.url.join(location)))
        except httpx.InvalidURL:
            host = _host(self.url)
            details = {"host": host, "reason": "bad_redirect"}
            raise OutboundFailed(f"{host} redirected to an invalid URL.", details=details) from None
        method, headers, body = self.method, self.headers, self.body
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, body = "GET", None
            headers = {k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}
        if _origin(url) != _origin(self.url):
            headers = {k: v for k, v in headers.items() if k.lower() not in _DROP_CROSS_ORIGIN}
        return _Hop(url, method, headers, body)


async def _read(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """At most ``max_bytes`` of the (decoded) body, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            break
    return b"".join(chunks)[:max_bytes], size > max_bytes


def _response_headers(response: httpx.Response) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        if name not in _DROP_RESPONSE:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    max_bytes: int = 1_000_000,
    timeout_s: float = 15.0,
    max_redirects: int = 5,
    allow_hosts: Sequence[str] = (),
    only_hosts: Sequence[str] = (),
) -> FetchResult:
    """Fetch ``url`` for a user, refusing non-public addresses at every hop (see module doc).

    Args:
        url: an absolute ``http``/``https`` URL.
        method: the HTTP method; 303 (and 301/302 after POST) redirects continue with GET.
        headers: request headers, never logged nor returned; ``Host`` is set by this function,
            ``Authorization``/``Cookie`` are dropped when a redirect changes origin.
        body: the request body (bytes).
        max_bytes: the most body bytes returned (after content decoding); more sets ``truncated``.
        timeout_s: seconds for the whole call, DNS, redirects and body included.
        max_redirects: redirects followed (301, 302, 303, 307, 308); one more is an error.
        allow_hosts: extra allow-list entries, as for :func:`check_url`.
        only_hosts: when given, a restriction: every hop's host must be one of these names
            (exact, or ``*.suffix``), on top of the address check (reason ``not_listed``).
            Unlike ``allow_hosts`` it never lets a non-public address through, so it is what
            a user-written spec may set.

    Raises:
        OutboundRefused: (400) the URL or a redirect target is refused; see :func:`check_url`.
        OutboundFailed: (502) details ``{"host", "reason"}``, ``reason`` one of ``timeout``,
            ``connect``, ``tls``, ``too_many_redirects``, ``bad_redirect``, ``transport``.
        ValueError: a negative ``max_bytes``/``max_redirects`` or a non-positive ``timeout_s``.
    """
    if max_bytes < 0 or max_redirects < 0 or timeout_s <= 0:
        raise ValueError("max_bytes and max_redirects must be >= 0 and timeout_s > 0")
    hop = _Hop(_parse(url), method.upper(), dict(headers or {}), body)
    host, allow = _host(hop.url), tuple(allow_hosts)
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(max_redirects + 1):
                hop_host = _host(hop.url)
                if only_hosts and not _host_allowed(hop_host, {h.lower() for h in only_hosts}):
                    message = f"{hop_host} is not one of the hosts this agent may fetch."
                    raise _refused(hop_host, "not_listed", message)
                addresses = await asyncio.to_thread(_check, hop.url, allow)  # DNS off the loop
                async with _client(timeout_s) as client:
                    response = await hop.send(client, addresses)
                    try:
                        location = response.headers.get("location")
                        if response.status_code in REDIRECT_STATUSES and location:
                            hop = hop.redirected(response.status_code, location)
                            continue
                        data, truncated = await _read(response, max_bytes)
                    finally:
                        await response.aclose()
                return FetchResult(
                    status=response.status_code,
                    headers=_response_headers(response),
                    body=data,
                    truncated=truncated,
                    url=str(hop.url),
                    content_type=response.headers.get("content-type", ""),
                )
    except (TimeoutError, httpx.TimeoutException):
        message = f"The request to {host} did not complete within {timeout_s:g} s."
        details = {"host": host, "reason": "timeout", "timeout_s": timeout_s}
        raise OutboundFailed(message, details=details) from None
    except httpx.HTTPError as exc:
        details = {"host": host, "reason": "transport"}
        raise OutboundFailed(f"The request to {host} failed.", details=details) from exc
    details = {"host": _host(hop.url), "reason": "too_many_redirects"}
    raise OutboundFailed(f"More than {max_redirects} redirects.", details=details)

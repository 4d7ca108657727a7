"""``GET /metrics``: the Prometheus text exposition of this process (docs/observability.md).

Access: with ``METRICS_TOKEN`` set, ``Authorization: Bearer <METRICS_TOKEN>`` is required (401
otherwise). Without it, only direct requests from loopback or private addresses are served
(``REMOTE_ADDR``; a request carrying proxy headers counts as remote): 403 otherwise.
``METRICS_ENABLED=false``: 404.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from runtime_project.exceptions import error_body

_PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")
# Loopback and private (RFC 1918, IPv6 unique local) networks: a Prometheus on the host or in
# the same private network. Not Python's ``is_private``, which also covers documentation ranges.
LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
)


def _local(request: HttpRequest) -> bool:
    """A direct request from a loopback or private address (not relayed by a proxy)."""
    if any(request.META.get(h) for h in _PROXY_HEADERS):
        return False
    try:
        ip = ipaddress.ip_address(str(request.META.get("REMOTE_ADDR", "")).split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in LOCAL_NETWORKS)


def _refused(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse(error_body(code, message), status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_ENABLED:
        raise Http404
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return _refused(401, "not_authenticated", "Send Authorization: Bearer <METRICS_TOKEN>.")
    elif not _local(request):
        return _refused(
            403, "forbidden", "Metrics are served to local addresses only (no METRICS_TOKEN)."
        )
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

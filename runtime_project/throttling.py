"""Request rate limits of the REST API (DRF throttles; docs/limits.md).

Three throttles run on every DRF view (``REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]``):

- :class:`CredentialRateThrottle` (``THROTTLE_USER``, e.g. ``"1200/min"``): per credential: one
  API key (its prefix), one OAuth2 application acting for one user, or one user's browser
  session;
- :class:`TeamRateThrottle` (``THROTTLE_TEAM``, overridden by ``Team.rate_limit``): the sum
  over every credential acting in a team. A request counts against the team its credential is
  bound to (a team API key); a credential bound to no team (an all-teams API key, an OAuth2
  token, a browser session) counts against the user's default team
  (``accounts.selectors.default_team``: the personal team, else the oldest membership), whichever
  team's objects the request touches;
- :class:`AnonRateThrottle` (``THROTTLE_ANON``): unauthenticated requests that a view lets
  through (the OpenAPI schema, ...), per client IP (``REST_FRAMEWORK["NUM_PROXIES"]``, from
  ``THROTTLE_NUM_PROXIES``, says how many ``X-Forwarded-For`` hops to trust; 0 by default, so
  the header cannot be forged to dodge the limit).

A request over a limit gets 429 ``throttled`` with a ``Retry-After`` header (whole seconds) and
``details.retry_after_s``. Requests refused before the throttles (401, 403) are not counted.

The counters live in Django's default cache: ``LocMemCache`` in the embedded default (one
process), Redis with ``REDIS_URL``, so a limit holds across every web process. Instead of DRF's
stock sliding log (a list of timestamps per key, read and written back whole, so concurrent
processes lose each other's hits and a 6000/min key moves ~50 KB per request), each throttle
keeps two atomic counters (``cache.incr``: Redis ``INCR``) for the current and previous fixed
window and weighs the previous one by how much of it still overlaps the sliding window
(Cloudflare's sliding-window counter). It never admits more than the rate; a refused request is
not counted. If the cache is unreachable, requests are let through (and a warning logged):
a rate limit is not worth an outage.

Two more guard what DRF does not serve: :class:`ClientIpThrottle` (``THROTTLE_OAUTH``) the
OAuth2 token, login, revocation and introspection endpoints per client IP, and
:class:`WebSocketConnectThrottle` (``THROTTLE_WS_CONNECT``) WebSocket handshakes per
credential (closed with 4429 and a ``throttled`` error frame).

Rates are read from settings at every request (``override_settings`` works; DRF's stock classes
freeze ``DEFAULT_THROTTLE_RATES`` at import).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class _WindowThrottle(SimpleRateThrottle):
    """DRF's ``SimpleRateThrottle`` (cache, timer, rate format, ``wait()`` contract) with an
    atomic sliding-window counter. Subclasses name their ``scope``, the ``setting`` holding
    their rate, and implement ``get_cache_key``; :meth:`rate_for` may pick a rate per request.
    """

    cache_format = "throttle:%(scope)s:%(ident)s"
    setting = ""

    def __init__(self) -> None:  # the rate is resolved per request, not at construction
        self.rate: str | None = None
        self.num_requests = self.duration = 0
        self._state = (0, 0, 0.0)

    def get_rate(self) -> str | None:
        return getattr(settings, self.setting, None)

    def rate_for(self, request: Any) -> str | None:
        """The rate (``"<n>/<s|m|h|d>"``) applying to ``request``; ``None``: not limited."""
        return self.get_rate()

    def allow_request(self, request: Any, view: Any) -> bool:
        self.rate = self.rate_for(request)
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        num_requests, duration = self.parse_rate(self.rate)
        self.num_requests, self.duration = int(num_requests or 0), int(duration or 1)
        try:
            return self._hit()
        except Exception:  # the cache (Redis) is down: fail open
            logger.warning("rate limit %s not checked: the cache failed", self.scope, exc_info=True)
            return True

    def _hit(self) -> bool:
        now = self.timer()
        window = int(now // self.duration)
        current_key, previous_key = f"{self.key}:{window}", f"{self.key}:{window - 1}"
        ttl = self.duration * 2 + 1
        try:
            current = self.cache.incr(current_key)
        except ValueError:  # the window's first hit
            current = 1 if self.cache.add(current_key, 1, ttl) else self.cache.incr(current_key)
        previous = int(self.cache.get(previous_key) or 0)
        elapsed = now - window * self.duration
        estimate = previous * (self.duration - elapsed) / self.duration + current
        self._state = (previous, current - 1, elapsed)
        if estimate <= self.num_requests:
            return True
        try:
            self.cache.decr(current_key)  # a refused request does not count
        except ValueError:
            pass
        return False

    def wait(self) -> float:
        """Seconds until one more request fits (at least 1; DRF rounds it up for
        ``Retry-After``)."""
        n, duration = self.num_requests, self.duration
        previous, others, elapsed = self._state
        if others + 1 <= n and previous > 0:
            # Room in this window once the previous window's weight has fallen far enough.
            wait = duration * (1 - (n - 1 - others) / previous) - elapsed
        else:
            # This window is full: into the next one, where this window's count weighs.
            wait = (duration - elapsed) + duration * max(0.0, 1 - (n - 1) / max(others, 1))
        return max(wait, 1.0)


class CredentialRateThrottle(_WindowThrottle):
    """``THROTTLE_USER`` per credential: an API key, an OAuth2 app for one user, or a user's
    browser session."""

    scope = "user"
    setting = "THROTTLE_USER"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = request.user
        if user is None or not user.is_authenticated:
            return None
        label = str(getattr(user, "credential_label", "") or "")
        if label.startswith("api_key:"):
            ident = label
        elif label:  # an OAuth2 app: one bucket per app and user
            ident = f"{label}:{user.pk}"
        else:
            ident = f"user:{user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class TeamRateThrottle(_WindowThrottle):
    """``THROTTLE_TEAM`` (or ``Team.rate_limit``) per team: the credential's team, else the
    user's default team."""

    scope = "team"
    setting = "THROTTLE_TEAM"

    def rate_for(self, request: Any) -> str | None:
        self.team_id = None
        user = request.user
        if user is None or not user.is_authenticated:
            return None
        from accounts.limits import team_rate
        from accounts.selectors import default_team
        from runtime_project.exceptions import NotFound

        try:  # an API key's own team, else the default one (remembered for the view)
            team = default_team(user=user)
        except NotFound:  # in no team: only the credential's own limit applies
            return None
        # Keyed by the team's uuid: a pk can come back (SQLite reuses them after a rollback).
        self.team_id, own = team.uuid, team.rate_limit
        return team_rate(own or "")

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if self.team_id is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.team_id}


class AnonRateThrottle(_WindowThrottle):
    """``THROTTLE_ANON`` per client IP, for requests without a credential."""

    scope = "anon"
    setting = "THROTTLE_ANON"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.user is not None and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ClientIpThrottle(_WindowThrottle):
    """``THROTTLE_OAUTH`` per client IP and endpoint, for the plain Django views that take
    credentials (``/o/token/``, ``/o/login/``, ``/o/revoke_token/``, ``/o/introspect/``):
    guessing client secrets or passwords is bounded like any other API use."""

    scope = "oauth"
    setting = "THROTTLE_OAUTH"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.cache_format % {
            "scope": self.scope,
            "ident": f"{request.path}:{self.get_ident(request)}",
        }


class WebSocketConnectThrottle(CredentialRateThrottle):
    """``THROTTLE_WS_CONNECT`` WebSocket handshakes per credential (a reconnect loop must not
    turn into a flood of stream replays)."""

    scope = "ws_connect"
    setting = "THROTTLE_WS_CONNECT"


def retry_after_s(throttle: _WindowThrottle) -> int:
    """Whole seconds to announce in ``Retry-After`` after ``throttle`` refused a request."""
    return max(1, math.ceil(throttle.wait()))


def ip_rate_limited(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Wrap a plain Django view: its POSTs count against :class:`ClientIpThrottle`; over the
    rate the answer is 429 ``throttled`` with ``Retry-After`` (and the view does not run)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # Imported here: DRF imports this module while rest_framework.views is still loading.
        from runtime_project.exceptions import error_body

        if request.method == "POST":
            throttle = ClientIpThrottle()
            if not throttle.allow_request(request, None):
                wait = retry_after_s(throttle)
                body = error_body(
                    "throttled", "Too many requests; retry later.", {"retry_after_s": wait}
                )
                return JsonResponse(body, status=429, headers={"Retry-After": str(wait)})
        return view(request, *args, **kwargs)

    return wrapped

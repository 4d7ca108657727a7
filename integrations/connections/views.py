"""The browser side of a connection: ``GET /oauth/connect/<name>`` and its callback.

1. ``/oauth/connect/<name>[?team=<slug or id>][&next=/path]`` (signed in with the browser
   session; otherwise redirected to the login page and back): a new ``state`` and PKCE
   ``code_verifier`` are kept in the Django session, bound to the user and the provider, and
   the browser is redirected to the provider's authorize URL (``state``, ``code_challenge``,
   ``code_challenge_method=S256``, ``redirect_uri`` = the callback below).
2. ``/oauth/callback/<name>?code=…&state=…`` (also ``/oauth/connect/<name>/callback``): the
   state must be one this session started, for this user and provider, at most
   ``OAUTH_CONNECTIONS_FLOW_TTL_S`` old, and is used once; the code is exchanged with the
   verifier at the token endpoint (through the outbound guard), the tokens are stored
   encrypted, and the browser is redirected to ``next`` or shown a short page (JSON when it
   asks for ``application/json``).

Errors answer in the same two forms with ``{"error": {"code", "message", "details"}}``:
``access_denied`` and other provider errors (400, the provider's ``error``), ``invalid_state``
(400), ``missing_code`` (400), ``oauth_provider_not_found`` (404), ``ambiguous_provider`` (400),
``oauth_provider_error`` / ``outbound_failed`` (502), ``outbound_refused`` (400). No code,
verifier, secret or token is ever shown or logged.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from asgiref.sync import async_to_sync
from authlib.common.security import generate_token
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from integrations.connections import oauth, selectors, services
from integrations.connections.models import OAuthConnection, OAuthProvider
from runtime_project.exceptions import ApplicationError, InvalidInput, error_body

SESSION_KEY = "oauth_connections"
MAX_PENDING = 5  # flows one browser session may have started and not finished


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _page(request: HttpRequest, status: int, title: str, text: str, data: dict[str, Any]) -> Any:
    if _wants_json(request):
        return JsonResponse(data, status=status)
    body = format_html(
        "<!doctype html><html><head><meta charset='utf-8'><title>{}</title></head>"
        "<body><h1>{}</h1><p>{}</p></body></html>",
        title, title, text,
    )  # fmt: skip
    return HttpResponse(body, status=status, content_type="text/html; charset=utf-8")


def _error(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    body = error_body(exc.code, exc.message, exc.details)
    return _page(request, exc.status_code, "Connection failed", exc.message, body)


def _redirect_uri(request: HttpRequest, name: str) -> str:
    path = reverse("connections:callback", args=[name])
    base = settings.OAUTH_CONNECTIONS_REDIRECT_BASE_URL.rstrip("/")
    return base + path if base else request.build_absolute_uri(path)


def _next(request: HttpRequest) -> str:
    """``?next=`` when it is a path of this site (never another origin), else ``""``."""
    target = request.GET.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target.startswith("/") and not target.startswith("//") and safe else ""


def _pending(request: HttpRequest) -> dict[str, dict[str, Any]]:
    """The flows this browser session started, without the stale ones."""
    flows = request.session.get(SESSION_KEY) or {}
    ttl = int(settings.OAUTH_CONNECTIONS_FLOW_TTL_S)
    now = time.time()
    return {s: f for s, f in flows.items() if isinstance(f, dict) and now - f.get("at", 0) < ttl}


@never_cache
@require_GET
def connect(request: HttpRequest, provider: str) -> HttpResponse:
    """Start the authorization code flow for the signed-in user (see the module docstring)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        found = selectors.provider_for_connect(
            user=request.user, name=provider, team=request.GET.get("team") or None
        )
    except ApplicationError as exc:
        return _error(request, exc)
    state = generate_token(32)
    verifier = generate_token(64) if found.use_pkce else None  # RFC 7636: 43-128 characters
    redirect_uri = _redirect_uri(request, found.name)
    flows = _pending(request)
    oldest_first = sorted(flows, key=lambda s: flows[s]["at"])
    for stale in oldest_first[: max(0, len(flows) - MAX_PENDING + 1)]:
        flows.pop(stale)
    flows[state] = {
        "provider": found.pk, "user": request.user.pk, "verifier": verifier,
        "redirect_uri": redirect_uri, "next": _next(request), "at": time.time(),
    }  # fmt: skip
    request.session[SESSION_KEY] = flows
    url = oauth.authorization_url(
        found, redirect_uri=redirect_uri, state=state, code_verifier=verifier
    )
    return HttpResponseRedirect(url)


def _take_flow(request: HttpRequest, name: str) -> dict[str, Any]:
    """The pending flow of ``?state=`` (removed from the session: a state is used once).

    Raises:
        InvalidInput: ``invalid_state``: none, unknown, stale, another user's or another
            provider's.
    """
    state = request.GET.get("state", "")
    flows = _pending(request)
    flow = None
    for known in list(flows):
        if secrets.compare_digest(known.encode(), state.encode()):
            flow = flows.pop(known)
    request.session[SESSION_KEY] = flows
    invalid = InvalidInput(
        "The state of this callback is not one this browser started (or it expired); start "
        "again from /oauth/connect/" + name + ".",
        code="invalid_state",
        details={"provider": name},
    )
    if not state or flow is None or flow.get("user") != request.user.pk:
        raise invalid
    provider = OAuthProvider.objects.filter(pk=int(flow.get("provider") or 0), name=name).first()
    if provider is None:
        raise invalid
    return {**flow, "provider": provider}


@never_cache
@require_GET
def callback(request: HttpRequest, provider: str) -> HttpResponse:
    """Finish the flow: check the state, exchange the code, store the tokens."""
    if not request.user.is_authenticated:
        return _error(
            request,
            InvalidInput(
                "Sign in first: the callback must come back to the browser session that "
                "started the connection.",
                code="invalid_state",
            ),
        )
    try:
        flow = _take_flow(request, provider)
        found: OAuthProvider = flow["provider"]
        # Still a member of the provider's team (the flow may have started before a change).
        found = selectors.provider_for_connect(
            user=request.user, name=found.name, team=str(found.team.uuid)
        )
        if request.GET.get("error"):
            error = request.GET["error"][:80]
            description = request.GET.get("error_description", "")[:200]
            raise ApplicationError(
                f"The provider did not grant access: {error}"
                + (f" ({description})." if description else "."),
                code=error if error == "access_denied" else "oauth_authorization_failed",
                details={"provider": found.name, "error": error},
            )
        code = request.GET.get("code", "")
        if not code:
            raise InvalidInput(
                "The callback has no authorization code.",
                code="missing_code",
                details={"provider": found.name},
            )
        connection = _finish(found, request.user, code, flow)
    except ApplicationError as exc:
        return _error(request, exc)
    if flow["next"]:
        separator = "&" if "?" in flow["next"] else "?"
        return HttpResponseRedirect(f"{flow['next']}{separator}connected={found.name}")
    data = {
        "connection": {
            "id": str(connection.uuid), "provider": found.name, "team": found.team.slug,
            "status": connection.status, "scopes": connection.scopes,
            "account": connection.account,
            "expires_at": connection.expires_at.isoformat() if connection.expires_at else None,
        }
    }  # fmt: skip
    who = f" as {connection.account}" if connection.account else ""
    text = f"{found.name} is connected{who}. Agents of {found.team.slug} may now use it."
    return _page(request, 200, "Connected", text, data)


def _finish(provider: OAuthProvider, user: Any, code: str, flow: dict[str, Any]) -> OAuthConnection:
    secret = services.client_secret(provider)
    tokens = async_to_sync(oauth.exchange_code)(
        provider,
        secret=secret,
        code=code,
        redirect_uri=flow["redirect_uri"],
        code_verifier=flow.get("verifier"),
    )
    account = ""
    if provider.userinfo_url:
        try:
            account = async_to_sync(oauth.userinfo_account)(
                provider, access_token=tokens.access_token
            )
        except ApplicationError:
            account = ""  # who it is is a nicety; the tokens are what matters
    return services.connection_store(provider=provider, user=user, tokens=tokens, account=account)

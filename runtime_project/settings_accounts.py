"""Settings of the accounts features: OAuth2, sharing, rate limits and quotas (imported by
``runtime_project.settings``, which merges ``REST_FRAMEWORK_THROTTLING`` into
``REST_FRAMEWORK``)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from runtime_project.envvars import boolean, count, env, rate, typed

# OAUTH2 ----------------------------------------------------------------------------------------
# django-oauth-toolkit at /o/ (authorize, token, revoke_token, introspect) with the RFC 8414 and
# RFC 9728 metadata at /.well-known/ (accounts/oauth.py, docs/auth.md "OAuth2"). Grants:
# authorization code with PKCE (S256, RFC 7636) for third-party apps, client credentials for
# services, refresh tokens (rotated, replay revokes the family). Access tokens carry the API-key
# scopes (accounts.models.Scope, repeated here literally: settings must not import apps; a test
# keeps the two equal) and are accepted by REST, SSE and WebSocket (accounts/authentication.py).
# Applications are registered in the admin or with `manage.py create_oauth_app`.
OAUTH2_ISSUER = os.environ.get("OAUTH2_ISSUER", "").rstrip("/")  # empty: from the request
if OAUTH2_ISSUER and urlsplit(OAUTH2_ISSUER).scheme not in {"http", "https"}:
    raise ImproperlyConfigured(f"OAUTH2_ISSUER={OAUTH2_ISSUER!r} must be an http(s) URL")
_OAUTH2_REDIRECT_SCHEMES = env.list("OAUTH2_REDIRECT_URI_SCHEMES", default=["https", "http"])
OAUTH2_PROVIDER: dict[str, Any] = {
    "SCOPES": {
        "agents:read": "Read agents and models",
        "agents:write": "Create, change and delete agents",
        "sessions:read": "Read sessions, tasks, events, messages and files",
        "sessions:write": "Create, change and delete sessions and their files",
        "tasks:write": "Start, cancel and resume tasks",
        "admin": "Everything, including team, key, secret and credential management",
    },
    # A client that asks for no scope gets read-only access.
    "DEFAULT_SCOPES": ["agents:read", "sessions:read"],
    "PKCE_REQUIRED": True,  # every authorization-code client, public or confidential
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ACCESS_TOKEN_EXPIRE_SECONDS": typed("OAUTH2_ACCESS_TOKEN_EXPIRE_S", int, 3600),
    "REFRESH_TOKEN_EXPIRE_SECONDS": typed("OAUTH2_REFRESH_TOKEN_EXPIRE_S", int, 30 * 24 * 3600),
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,  # must be 0 with hashed token storage
    # Client secrets are hashed by DOT (Django's default password hasher); shown once.
    "CLIENT_SECRET_HASHER": "default",
    # http stays allowed for RFC 8252 loopback redirects of native apps and MCP clients
    # (http://127.0.0.1:<any port>/..., http://localhost:<any port>/...).
    "ALLOWED_REDIRECT_URI_SCHEMES": _OAUTH2_REDIRECT_SCHEMES,
    "ALLOW_LOCALHOST_LOOPBACK": True,
    "ALLOW_URI_WILDCARDS": False,
    "REQUEST_APPROVAL_PROMPT": "force",
    "OIDC_ENABLED": False,
    "OIDC_ISS_ENDPOINT": OAUTH2_ISSUER,  # the RFC 8414 issuer and the RFC 9207 `iss` parameter
    # RFC 9700 (OAuth 2.0 Security BCP): no implicit or password grant, S256 only, no tokens
    # in query strings, `iss` in authorization responses, only SHA-256 checksums of tokens
    # stored (a database leak yields no usable token).
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    # RFC 8414 / RFC 9728 discovery: advertise only what is served.
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "client_credentials", "refresh_token"],
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ],
    "OAUTH2_PROTECTED_RESOURCE_BEARER_METHODS_SUPPORTED": ["header"],
    "OAUTH2_PROTECTED_RESOURCE_NAME": "Agent Runtime Server API",
}

# SHARING ---------------------------------------------------------------------------------------
# Share links and the self-contained HTML export of a session (docs/sharing.md).
# POST /api/v1/sessions/{id}/export uploads the export to SHARE_PROVIDER_URL (a raw text/html
# POST, with `Authorization: Bearer SHARE_PROVIDER_TOKEN` when set) and returns the "url" of the
# provider's JSON answer; unset, that endpoint answers 400 share_provider_not_configured. The
# upload goes through runtime_project/outbound.py: a provider on a private address needs an
# OUTBOUND_ALLOWED_HOSTS entry.
SHARE_PROVIDER_URL: str = env.str("SHARE_PROVIDER_URL", default="")
SHARE_PROVIDER_TOKEN: str = env.str("SHARE_PROVIDER_TOKEN", default="")
SHARE_PROVIDER_TIMEOUT_S = typed("SHARE_PROVIDER_TIMEOUT_S", float, 60.0)
# The export embeds workspace files (and event payloads kept in artifacts) up to this size each
# and this much in total; bigger files are listed without content. Event bodies stop after
# SHARE_EXPORT_MAX_EVENTS events or SHARE_EXPORT_MAX_EVENT_BYTES of event data.
SHARE_EXPORT_MAX_FILE_BYTES = typed("SHARE_EXPORT_MAX_FILE_BYTES", int, 1024 * 1024)
SHARE_EXPORT_MAX_TOTAL_BYTES = typed("SHARE_EXPORT_MAX_TOTAL_BYTES", int, 20 * 1024 * 1024)
SHARE_EXPORT_MAX_EVENTS = typed("SHARE_EXPORT_MAX_EVENTS", int, 20000)
SHARE_EXPORT_MAX_EVENT_BYTES = typed("SHARE_EXPORT_MAX_EVENT_BYTES", int, 64 * 1024 * 1024)
# An SSE stream opened with a share token re-checks the link at least this often (seconds, and
# on every heartbeat) and ends once it is revoked or expired.
SHARE_STREAM_RECHECK_S = typed("SHARE_STREAM_RECHECK_S", float, 5.0)

# LIMITS ----------------------------------------------------------------------------------------
# Request rates of the REST API (runtime_project/throttling.py, docs/limits.md), each
# "<requests>/<period>" (period s, min, hour or day) or "none": per credential (an API key, an
# OAuth2 app for one user, a browser session), per team (every credential acting in it; a
# team's own Team.rate_limit wins) and per client IP for unauthenticated requests. Counted in
# the default cache, so across processes when REDIS_URL is set.


THROTTLE_USER = rate("THROTTLE_USER", "1200/min")
THROTTLE_TEAM = rate("THROTTLE_TEAM", "6000/min")
THROTTLE_ANON = rate("THROTTLE_ANON", "120/min")
# Per client IP and endpoint: POSTs to /o/token/, /o/login/, /o/revoke_token/, /o/introspect/.
THROTTLE_OAUTH = rate("THROTTLE_OAUTH", "60/min")
# WebSocket handshakes per credential.
THROTTLE_WS_CONNECT = rate("THROTTLE_WS_CONNECT", "120/min")
REST_FRAMEWORK_THROTTLING: dict[str, Any] = {}
REST_FRAMEWORK_THROTTLING["DEFAULT_THROTTLE_CLASSES"] = [
    "runtime_project.throttling.CredentialRateThrottle",
    "runtime_project.throttling.TeamRateThrottle",
    "runtime_project.throttling.AnonRateThrottle",
]
# For DRF's stock throttle classes; ours read THROTTLE_* at each request.
REST_FRAMEWORK_THROTTLING["DEFAULT_THROTTLE_RATES"] = {
    "user": THROTTLE_USER,
    "team": THROTTLE_TEAM,
    "anon": THROTTLE_ANON,
}
# How many reverse proxies in front of the server append to X-Forwarded-For: the client IP of
# the anonymous rate is the one that many hops from the right. 0: REMOTE_ADDR, the header is
# ignored (a client could forge it).
REST_FRAMEWORK_THROTTLING["NUM_PROXIES"] = count("THROTTLE_NUM_PROXIES", 0)
# Active (queued, running or waiting) tasks per team, and live sandboxes per team; a team's
# Team.max_running_tasks / Team.max_sandboxes wins. 0: no limit. Over the limit a create gets
# 429 team_task_limit / team_sandbox_limit with Retry-After.
TEAM_MAX_RUNNING_TASKS = count("TEAM_MAX_RUNNING_TASKS", 100)
TEAM_MAX_SANDBOXES = count("TEAM_MAX_SANDBOXES", 10)
# One task at a time across the whole server (a single-tenant box, a GPU, a licence): creating a
# task while any task is queued, running or waiting gets 409 server_busy.
EXCLUSIVE_MODE = boolean("EXCLUSIVE_MODE", False)

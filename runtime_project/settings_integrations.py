"""Settings of the integrations (``integrations/``) and of server modes (imported by
``runtime_project.settings``). Each integration has an ``*_ENABLED`` flag (default on) and its
own section below; docs/integrations.md lists them all."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from runtime_project.envvars import boolean, choice, host_list, typed

# SERVER MODES ----------------------------------------------------------------------------------
# Which URL modules and consumers this process serves (runtime_project/modes.py).
SERVER_MODE = choice("SERVER_MODE", "all", {"all", "runtime", "agent", "debugger", "embodiment"})
ADMIN_PORT: int | None = typed("ADMIN_PORT", int, None)
AGENT_DOMAIN = os.environ.get("AGENT_DOMAIN", "").strip().lower().strip(".")

# OPENAI-COMPATIBLE API (integrations/openai) ---------------------------------------------------
OPENAI_API_ENABLED = boolean("OPENAI_API_ENABLED", True)
# Longest a /v1/chat/completions or /v1/responses call waits for its task, seconds (the task's
# own timeout is set to this too); past it the task is cancelled and the call answers 504.
OPENAI_API_MAX_WAIT_S: float = typed("OPENAI_API_MAX_WAIT_S", float, 600.0)

# MCP SERVER (integrations/mcp) -----------------------------------------------------------------
MCP_ENABLED = boolean("MCP_ENABLED", True)
# Longest a tools/call waits for its task (seconds); then the task is cancelled and the call
# answers isError (clients' own request timeouts are often 60-300 s).
MCP_MAX_WAIT_S: float = typed("MCP_MAX_WAIT_S", float, 600.0)
# Shortest gap between two progress notifications of one call; token deltas in between are
# merged into the next one.
MCP_PROGRESS_INTERVAL_S: float = typed("MCP_PROGRESS_INTERVAL_S", float, 0.5)
# Streamable HTTP sessions (clients using the initialize handshake): closed after this many idle
# seconds; at most this many open at once per process (then 503).
MCP_SESSION_IDLE_TIMEOUT_S: float = typed("MCP_SESSION_IDLE_TIMEOUT_S", float, 1800.0)
MCP_MAX_SESSIONS: int = typed("MCP_MAX_SESSIONS", int, 1000)

# CHATGPT ACTIONS (integrations/chatgpt) --------------------------------------------------------
CHATGPT_ENABLED = boolean("CHATGPT_ENABLED", True)
# How long an action call waits for the run (ChatGPT gives up after 45 s); a run still going
# then answers status "running" with its task_id for the getTaskResult operation.
CHATGPT_MAX_WAIT_S = min(max(typed("CHATGPT_MAX_WAIT_S", float, 40.0), 1.0), 45.0)
# /.well-known/ai-plugin.json (legacy plugin manifest; docs/integrations/chatgpt.md): the agent
# slug it describes (public agents only; empty: every public agent via /chatgpt/openapi.json).
CHATGPT_PLUGIN_AGENT = os.environ.get("CHATGPT_PLUGIN_AGENT", "").strip()
CHATGPT_PLUGIN_NAME = os.environ.get("CHATGPT_PLUGIN_NAME", "Agent Runtime")[:20]
CHATGPT_PLUGIN_DESCRIPTION = os.environ.get(
    "CHATGPT_PLUGIN_DESCRIPTION", "Run agents on the Agent Runtime Server and get their results."
)
CHATGPT_PLUGIN_AUTH = choice("CHATGPT_PLUGIN_AUTH", "bearer", {"bearer", "oauth"})
CHATGPT_VERIFICATION_TOKEN = os.environ.get("CHATGPT_VERIFICATION_TOKEN", "")
CHATGPT_LOGO_URL = os.environ.get("CHATGPT_LOGO_URL", "")  # default: <server>/chatgpt/logo.svg
CHATGPT_CONTACT_EMAIL = os.environ.get("CHATGPT_CONTACT_EMAIL", "")  # default: admin@<host>
CHATGPT_LEGAL_INFO_URL = os.environ.get("CHATGPT_LEGAL_INFO_URL", "")  # default: /api/docs/

# ALEXA SKILL (integrations/alexa) --------------------------------------------------------------
ALEXA_ENABLED = boolean("ALEXA_ENABLED", True)
# Check each request's signature and certificate chain (ask_sdk RequestVerifier) and its
# timestamp (TimestampVerifier, 150 s). Turn off only behind a proxy that already verifies.
ALEXA_VERIFY_SIGNATURE = boolean("ALEXA_VERIFY_SIGNATURE", True)
ALEXA_VERIFY_TIMESTAMP = boolean("ALEXA_VERIFY_TIMESTAMP", True)
# Certificate chain URL prefixes accepted besides Amazon's https://s3.amazonaws.com/echo.api/
# (comma-separated; for test rigs with their own signing CA).
ALEXA_CERT_URL_ALLOWLIST = [
    u.strip() for u in os.environ.get("ALEXA_CERT_URL_ALLOWLIST", "").split(",") if u.strip()
]
# PEM file of root CAs trusted for the signing chain (and the HTTPS fetching it) instead of the
# system trust store; empty: the system's.
ALEXA_TRUSTED_CA_FILE = os.environ.get("ALEXA_TRUSTED_CA_FILE", "").strip()
# How long a request waits for the agent's answer (Alexa gives a skill about 8 s).
ALEXA_MAX_WAIT_S: float = typed("ALEXA_MAX_WAIT_S", float, 7.0)

# AGENT ENDPOINTS, SWAGGER AND POSTMAN (integrations/endpoints, integrations/postman) ------------
AGENT_ENDPOINTS_ENABLED = boolean("AGENT_ENDPOINTS_ENABLED", True)
# Upper bound of a sync endpoint's wait (its timeout_s, ?wait=, Prefer: wait=) before a 202.
AGENT_ENDPOINTS_MAX_WAIT_S = typed("AGENT_ENDPOINTS_MAX_WAIT_S", float, 300.0)
# Serve /api/agents/{slug}/openapi.json and /docs/ of public agents without a credential.
AGENT_ENDPOINTS_PUBLIC_DOCS = boolean("AGENT_ENDPOINTS_PUBLIC_DOCS", True)
POSTMAN_ENABLED = boolean("POSTMAN_ENABLED", True)

# WEBHOOKS (integrations/webhooks) --------------------------------------------------------------
# Outbound webhooks (docs/integrations/webhooks.md): Standard Webhooks signatures, retries with
# backoff. The dispatcher runs in the server process (TASK_EXECUTOR inline/worker) or as the
# Celery task webhooks.tasks.dispatch_due_webhooks (TASK_EXECUTOR=celery: WEBHOOKS_BEAT_SCHEDULE).
WEBHOOKS_ENABLED = boolean("WEBHOOKS_ENABLED", True)
WEBHOOK_DISPATCHER_ENABLED = boolean("WEBHOOK_DISPATCHER_ENABLED", True)  # the in-process loop
WEBHOOK_DISPATCH_INTERVAL_S = typed("WEBHOOK_DISPATCH_INTERVAL_S", float, 2.0)  # poll period
WEBHOOK_TIMEOUT_S = typed("WEBHOOK_TIMEOUT_S", float, 10.0)  # one attempt, connect to last byte


def _delays(name: str, default: str) -> list[float]:
    """Comma-separated seconds, each 0 or more, at least one."""
    raw = os.environ.get(name) or default
    try:
        delays = [float(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        message = f"{name}={raw!r} is not a comma-separated list of seconds"
        raise ImproperlyConfigured(message) from None
    if not delays or any(not d >= 0 for d in delays):
        raise ImproperlyConfigured(f"{name}: give one or more delays of 0 or more seconds")
    return delays


# Seconds to wait before retry 1, 2, ... (the last value repeats); each delay gets +-20 % jitter.
# The default spreads 8 attempts over about 10 hours.
WEBHOOK_RETRY_SCHEDULE_S = _delays("WEBHOOK_RETRY_SCHEDULE_S", "5,30,120,600,3600,10800,21600")
WEBHOOK_MAX_ATTEMPTS = typed("WEBHOOK_MAX_ATTEMPTS", int, len(WEBHOOK_RETRY_SCHEDULE_S) + 1)
WEBHOOK_CONCURRENCY = typed("WEBHOOK_CONCURRENCY", int, 8)  # deliveries sent at once per pass
# Webhook URLs pass runtime_project/outbound.py's check (no private, loopback, link-local ...
# addresses, at create time and at every send). Exceptions: OUTBOUND_ALLOWED_HOSTS, these hosts /
# networks, or every address with WEBHOOK_ALLOW_PRIVATE_TARGETS (development only).
WEBHOOK_ALLOW_PRIVATE_TARGETS = boolean("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
WEBHOOK_ALLOWED_HOSTS = host_list("WEBHOOK_ALLOWED_HOSTS")
# After a secret rotation the previous secret also signs (a second v1 signature) this long.
WEBHOOK_SECRET_ROTATION_GRACE_S = typed("WEBHOOK_SECRET_ROTATION_GRACE_S", float, 24 * 3600.0)
if not (WEBHOOK_DISPATCH_INTERVAL_S > 0 and WEBHOOK_TIMEOUT_S > 0):
    raise ImproperlyConfigured("WEBHOOK_DISPATCH_INTERVAL_S and WEBHOOK_TIMEOUT_S must be above 0")
if WEBHOOK_MAX_ATTEMPTS < 1 or WEBHOOK_CONCURRENCY < 1:
    raise ImproperlyConfigured("WEBHOOK_MAX_ATTEMPTS and WEBHOOK_CONCURRENCY must be 1 or more")
# For settings.py (scale-out): CELERY_BEAT_SCHEDULE.update(WEBHOOKS_BEAT_SCHEDULE).
WEBHOOKS_BEAT_SCHEDULE = (
    {
        "webhooks": {
            "task": "webhooks.tasks.dispatch_due_webhooks",
            "schedule": WEBHOOK_DISPATCH_INTERVAL_S,
        }
    }
    if WEBHOOKS_ENABLED
    else {}
)

# OAUTH CONNECTIONS FOR TOOLS (integrations/connections) ----------------------------------------
OAUTH_CONNECTIONS_ENABLED = boolean("OAUTH_CONNECTIONS_ENABLED", True)
# Extra outbound allow-list entries (hosts, IPs, CIDR) for the providers' token, revocation and
# userinfo endpoints only, e.g. an identity provider on the private network (or 127.0.0.1 in
# tests); requests made with a connection's token follow OUTBOUND_ALLOWED_HOSTS as usual.
OAUTH_CONNECTIONS_ALLOWED_HOSTS = host_list("OAUTH_CONNECTIONS_ALLOWED_HOSTS")
# A token is refreshed when it expires within this many seconds.
OAUTH_CONNECTIONS_REFRESH_LEEWAY_S = typed("OAUTH_CONNECTIONS_REFRESH_LEEWAY_S", int, 60)
OAUTH_CONNECTIONS_HTTP_TIMEOUT_S = typed("OAUTH_CONNECTIONS_HTTP_TIMEOUT_S", float, 15.0)
# The public origin of this server for redirect URIs (e.g. https://agents.example.com), when the
# Host header the server sees is not the one browsers use; empty: from the request.
OAUTH_CONNECTIONS_REDIRECT_BASE_URL = os.environ.get("OAUTH_CONNECTIONS_REDIRECT_BASE_URL", "")
# Seconds a started connect flow (its state and PKCE verifier) stays valid.
OAUTH_CONNECTIONS_FLOW_TTL_S = typed("OAUTH_CONNECTIONS_FLOW_TTL_S", int, 600)

"""Settings for the agent runtime server, all read from the environment (django-environ).

Two ways to run, one code path (DESIGN §1): with nothing set, the embedded default (SQLite in WAL
mode under ``var/``, in-memory channel layer, inline executor, local sandbox); with
``DATABASE_URL`` / ``REDIS_URL`` set, PostgreSQL and Redis. Malformed values stop the process at
start with ``ImproperlyConfigured`` naming the variable.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from runtime_project.envvars import boolean as _bool
from runtime_project.envvars import choice as _choice
from runtime_project.envvars import count as _count
from runtime_project.envvars import env
from runtime_project.envvars import host_list as _host_list
from runtime_project.envvars import typed as _typed
from runtime_project.settings_storage import build_storages as _storages

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# GENERAL ---------------------------------------------------------------------------------------
DEBUG = _bool("DEBUG", False)
EMBEDDED = not os.environ.get("DATABASE_URL")


def _secret_key() -> str:
    """``SECRET_KEY`` (or ``SECRET_KEY_FILE``); generated once under ``var/`` for the embedded
    default only, required when running on PostgreSQL (a deployment)."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    if os.environ.get("SECRET_KEY_FILE"):
        return Path(os.environ["SECRET_KEY_FILE"]).read_text().strip()
    if not EMBEDDED and not _bool("CI", False):
        raise ImproperlyConfigured("SECRET_KEY is required when DATABASE_URL is set")
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# CORS (django-cors-headers): an explicit allow-list of browser origins, API paths only. Bearer
# credentials need no cookies, so cross-origin requests never carry the session cookie unless
# CORS_ALLOW_CREDENTIALS is set (and never with CORS_ALLOW_ALL_ORIGINS).
CORS_ALLOWED_ORIGINS: list[str] = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_ALL_ORIGINS = _bool("CORS_ALLOW_ALL_ORIGINS", False)
CORS_ALLOW_CREDENTIALS = _bool("CORS_ALLOW_CREDENTIALS", False) and not CORS_ALLOW_ALL_ORIGINS
CORS_URLS_REGEX = r"^/(api|v1|mcp|o|\.well-known)/.*$"
CORS_ALLOW_HEADERS = (
    "accept", "authorization", "content-type", "idempotency-key", "last-event-id",
    "x-debug-run", "x-monitor-id", "x-requested-with", "x-csrftoken",
)  # fmt: skip
CORS_EXPOSE_HEADERS = ("retry-after", "location", "content-disposition")
CORS_PREFLIGHT_MAX_AGE = 600

# HTTP security headers (SecurityMiddleware, XFrameOptionsMiddleware and
# runtime_project.middleware.SecurityHeadersMiddleware). HTTPS-only settings are opt-in because
# the embedded default serves plain HTTP on loopback.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_HSTS_SECONDS = _typed("SECURE_HSTS_SECONDS", int, 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = _bool("CSRF_COOKIE_SECURE", False)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if _bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SERVER_VERSION = "0.1.0"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "oauth2_provider",
    "storages",
    "channels",
    "accounts.apps.AccountsConfig",
    "sessions.apps.AgentSessionsConfig",
    "sandboxes.apps.SandboxesConfig",
    "debugger.apps.DebuggerConfig",
    "providers.apps.ProvidersConfig",
    "schedules.apps.SchedulesConfig",
    "runtimes.apps.RuntimesConfig",
    "integrations.webhooks.apps.WebhooksConfig",
    "integrations.alexa.apps.AlexaConfig",
    "integrations.connections.apps.ConnectionsConfig",
    "observability.apps.ObservabilityConfig",
    "console.apps.ConsoleConfig",
]

# A sync view and the whole middleware stack in one thread hop (runtime_project/handlers.py);
# false: Django's own ASGI handler (a hop per middleware; the baseline of bench/request_path.py).
ASGI_ONE_HOP = _bool("ASGI_ONE_HOP", True)
# Idle request threads the one-hop handler keeps for the next requests, each with its database
# connection (a burst's extra threads close theirs and end).
ASGI_IDLE_THREADS = _count("ASGI_IDLE_THREADS", 8)  # 0: none kept
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # first: times the whole stack
    "django.middleware.security.SecurityMiddleware",
    "runtime_project.staticfiles.StaticFilesMiddleware",  # WhiteNoise, async
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # AGENT_DOMAIN host names; before CommonMiddleware, whose slash redirect reads the urlconf
    "integrations.endpoints.domains.AgentDomainMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "runtime_project.middleware.SecurityHeadersMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",  # last (docs/observability.md)
]
if not ASGI_ONE_HOP:
    # Django's handler holds a request's thread until its stream ends: a streamed answer closes
    # its connections instead (after every middleware that may have used them); the one-hop
    # handler gives the thread back, connection and all (runtime_project/handlers.py).
    MIDDLEWARE.insert(1, "runtime_project.middleware.StreamingConnectionsMiddleware")

# Django's default hashers, PBKDF2 first; a deployment may put Argon2 first (argon2-cffi).
PASSWORD_HASHERS: list[str] = env.list(
    "PASSWORD_HASHERS",
    default=[
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
        "django.contrib.auth.hashers.ScryptPasswordHasher",
    ],
)

ROOT_URLCONF = "runtime_project.urls"
ASGI_APPLICATION = "runtime_project.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# DATABASE --------------------------------------------------------------------------------------
# SQLite runs in WAL mode with IMMEDIATE transactions so concurrent writers queue on the write lock
# instead of failing with "database is locked" on upgrade (research/stack.md §1).
_sqlite_path = VAR_DIR / "db.sqlite3"
_DB_URL_ERROR = (
    "DATABASE_URL is not a valid database URL (expected e.g. postgres://user@host:5432/db)"
)
try:
    # django-environ warns with the parsed URL, password included, for an unknown scheme: make
    # that an error, and never echo the URL back.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{_sqlite_path}")}
except (ValueError, KeyError, UserWarning, environ.ImproperlyConfigured):
    raise ImproperlyConfigured(_DB_URL_ERROR) from None
if not DATABASES["default"].get("ENGINE"):
    raise ImproperlyConfigured(_DB_URL_ERROR)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# CHANNELS AND CACHE ----------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    # The pub/sub layer: one PUBLISH per group_send, local fan-out (~6x the core layer here,
    # research/stack.md §4). It is at-most-once, which is fine: the event log is the truth.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "runtime_project.channel_layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 10000},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# AUTH ------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/admin/login/"

# I18N / STATIC ---------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Served by the server process (runtime_project/staticfiles.py), found at start-up through the
# finders: no collectstatic step. Pyodide comes from npm (`npm ci`, scripts/setup.sh).
_PYODIDE_DIR = BASE_DIR / "node_modules" / "pyodide"
# The console's renderers (docs/console.md): markdown (marked), its sanitiser (DOMPurify) and
# ANSI colours (ansi_up), ES modules straight from npm.
_NODE = BASE_DIR / "node_modules"
_VENDOR = {
    "vendor/pyodide": _PYODIDE_DIR,
    "vendor/marked": _NODE / "marked" / "lib",
    "vendor/dompurify": _NODE / "dompurify" / "dist",
    "vendor/ansi_up": _NODE / "ansi_up",
}
STATICFILES_DIRS = [(prefix, path) for prefix, path in _VENDOR.items() if path.is_dir()]
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))

# STORAGE ---------------------------------------------------------------------------------------
# Workspace snapshots and artifacts go through Django's default storage: MEDIA_ROOT, or S3 when
# STORAGE_S3_BUCKET is set (runtime_project/settings_storage.py, docs/storage.md).
STORAGES = _storages()
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# REST FRAMEWORK --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "runtime_project.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.HasScope"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "runtime_project.exceptions.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "runtime_project.api.Pagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent Runtime Server API",
    "DESCRIPTION": (
        "Sessions, tasks and live event streams for agents running in sandboxes. "
        "Authenticate with `Authorization: Bearer <token>` (or `Token <token>`). "
        'Every error is `{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": SERVER_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Session and task statuses share values ("cancelled"); name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "SessionStatusEnum": "sessions.choices.SessionStatus",
        "TaskStatusEnum": "sessions.choices.TaskStatus",
        "AgentKindEnum": "sessions.choices.AgentKind",  # agents' and steps' "kind" differ
        # Team roles and chat message roles are both "role" fields.
        "TeamRoleEnum": "accounts.models.Role",
        "MessageRoleEnum": ["user", "assistant", "tool"],
        "ModelAccessModeEnum": "providers.models.ModelAccessMode",  # vs oneshot's "mode"
    },
    "PREPROCESSING_HOOKS": ["runtime_project.modes.drop_unserved_operations"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "runtime_project.schema.add_stream_endpoints",
    ],
}

# EXECUTION -------------------------------------------------------------------------------------
TASK_EXECUTOR = _choice("TASK_EXECUTOR", "inline", {"inline", "worker", "celery"})
TASK_CONCURRENCY = _typed("TASK_CONCURRENCY", int, 4)
TASK_LEASE_S = _typed("TASK_LEASE_S", float, 30.0)
TASK_MAX_ATTEMPTS = _typed("TASK_MAX_ATTEMPTS", int, 2)
TASK_DEFAULT_TIMEOUT_S = _typed("TASK_DEFAULT_TIMEOUT_S", float, 3600.0)
TASK_MAX_TIMEOUT_S = _typed("TASK_MAX_TIMEOUT_S", float, 6 * 3600.0)
TASK_CANCEL_GRACE_S = _typed("TASK_CANCEL_GRACE_S", float, 5.0)
# run_worker's SIGTERM drain: below Kubernetes' default 30 s termination grace period.
TASK_DRAIN_S = _typed("TASK_DRAIN_S", float, 20.0)
EVENT_FLUSH_INTERVAL_MS = _typed("EVENT_FLUSH_INTERVAL_MS", int, 15)
EVENT_INLINE_MAX_BYTES = _typed("EVENT_INLINE_MAX_BYTES", int, 64 * 1024)
EVENT_BROADCAST_MAX_BYTES = _typed("EVENT_BROADCAST_MAX_BYTES", int, 256 * 1024)
STREAM_HEARTBEAT_S = _typed("STREAM_HEARTBEAT_S", float, 15.0)
STREAM_BUFFER_LIMIT = _typed("STREAM_BUFFER_LIMIT", int, 5000)
# Slow stream readers (docs/streams.md): a WebSocket/SSE connection is closed (WS 4008, SSE
# `event: error`, code slow_consumer) when more than STREAM_MAX_BUFFER_BYTES (or
# STREAM_BUFFER_LIMIT frames) wait for it, or it makes no progress for STREAM_SEND_TIMEOUT_S;
# it is dropped outright if it has not read its final frame STREAM_SEND_TIMEOUT_S later.
STREAM_MAX_BUFFER_BYTES = _typed("STREAM_MAX_BUFFER_BYTES", int, 1024 * 1024)
STREAM_SEND_TIMEOUT_S = _typed("STREAM_SEND_TIMEOUT_S", float, 10.0)
# Largest frame a WebSocket client may send (bigger: error frame_too_large, close 1009).
STREAM_MAX_FRAME_BYTES = _typed("STREAM_MAX_FRAME_BYTES", int, 1024 * 1024)
# Remote runtimes (docs/remote-runtimes.md): how often an attached runtime's row is refreshed
# (and the ping interval runtimes are told); a row not seen for 3 heartbeats counts as gone.
RUNTIME_HEARTBEAT_S = _typed("RUNTIME_HEARTBEAT_S", float, 15.0)
ONESHOT_MAX_WAIT_S = _typed("ONESHOT_MAX_WAIT_S", float, 600.0)
# How long a task may wait for an answer (ask_user, a tool approval) before it fails with
# wait_expired (OpenAI's requires_action runs expire after 10 minutes; a chat user may be slower).
TASK_WAIT_TIMEOUT_S = _typed("TASK_WAIT_TIMEOUT_S", float, 24 * 3600.0)
# call_agent: how deep agents may call agents (a child of a child of a task is depth 2).
LLM_MAX_AGENT_DEPTH = _typed("LLM_MAX_AGENT_DEPTH", int, 3)
# Debug runs (docs/debugger.md): how long a pause at a breakpoint lasts unattended, and what
# happens then (``continue`` or ``abort``). The task's timeout clock stops while it is paused.
DEBUG_PAUSE_TIMEOUT_S = _typed("DEBUG_PAUSE_TIMEOUT_S", float, 600.0)
DEBUG_PAUSE_TIMEOUT_ACTION = _choice(
    "DEBUG_PAUSE_TIMEOUT_ACTION", "continue", {"continue", "abort"}
)

# CELERY (TASK_EXECUTOR=celery; runtime_project/celery.py) -----------------------------------
# The broker carries task ids only; the database row stays the truth (a message for a task that
# is no longer queued is ignored). acks_late + prefetch 1: a worker that dies before finishing
# leaves its message to another worker; the visibility timeout outlives the longest task, or
# Redis would hand a running task's message to a second worker.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "memory://")
if TASK_EXECUTOR == "celery" and CELERY_BROKER_URL == "memory://":
    raise ImproperlyConfigured("TASK_EXECUTOR=celery needs CELERY_BROKER_URL or REDIS_URL")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "default")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(TASK_MAX_TIMEOUT_S + 3600)}
CELERY_WORKER_CONCURRENCY = _typed("CELERY_WORKER_CONCURRENCY", int, TASK_CONCURRENCY)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Queue per agent kind, so sandbox-heavy and model-bound work scale apart
# (`celery -A runtime_project worker -Q sandbox` on some machines, `-Q llm` on others).
TASK_QUEUES = env.json(
    "TASK_QUEUES", default={"command": "sandbox", "python": "sandbox", "llm": "llm"}
)
# Beat (scale-out): the safety-net sweep (expired leases, lost broker messages, sandbox reaping).
CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "sessions.sweep", "schedule": max(TASK_LEASE_S / 2, 1.0)},
}

# SANDBOX ---------------------------------------------------------------------------------------
SANDBOX_BACKEND = _choice("SANDBOX_BACKEND", "local", {"local", "docker"})
# docker backend (sandboxes/backends/docker.py): engine URL (default: DOCKER_HOST), the image
# (needs python3), extra binds for every sandbox ("host:container[:ro]", comma-separated), CPUs
# per sandbox and an optional OCI runtime (e.g. runsc).
SANDBOX_DOCKER_URL = os.environ.get("SANDBOX_DOCKER_URL", "")
SANDBOX_DOCKER_IMAGE = os.environ.get("SANDBOX_DOCKER_IMAGE", "python:3.12-slim")
SANDBOX_DOCKER_MOUNTS = [m for m in os.environ.get("SANDBOX_DOCKER_MOUNTS", "").split(",") if m]
SANDBOX_DOCKER_CPUS = _typed("SANDBOX_DOCKER_CPUS", float, 1.0)
SANDBOX_DOCKER_RUNTIME = os.environ.get("SANDBOX_DOCKER_RUNTIME", "")
SANDBOX_ALLOW_UNISOLATED = _bool("SANDBOX_ALLOW_UNISOLATED", False)
SANDBOX_SECCOMP = _bool("SANDBOX_SECCOMP", True)  # the bubblewrap tier's syscall deny list
SANDBOX_CGROUPS = _bool("SANDBOX_CGROUPS", True)  # per-exec memory/pids cgroups when writable
SANDBOX_FORCE_TIER = os.environ.get("SANDBOX_FORCE_TIER") or None
SANDBOX_UID = _typed("SANDBOX_UID", int, 65534)
# Root servers give each sandbox its own uid in [BASE, BASE + COUNT) (a hash of its id), so
# RLIMIT_NPROC and file permissions are per sandbox; COUNT 0: every sandbox runs as SANDBOX_UID.
SANDBOX_UID_BASE = _typed("SANDBOX_UID_BASE", int, 200000)
SANDBOX_UID_COUNT = _typed("SANDBOX_UID_COUNT", int, 65536)
SANDBOX_NETWORK = _choice("SANDBOX_NETWORK", "none", {"none", "host"})
# The egress proxy of sandboxes with allow_hosts refuses private, loopback and link-local
# addresses unless this is set (e.g. a package mirror on the LAN).
SANDBOX_EGRESS_ALLOW_PRIVATE = _bool("SANDBOX_EGRESS_ALLOW_PRIVATE", False)
# Outbound HTTP the server makes for users (the http_fetch tool, MCP server URLs, model endpoints;
# runtime_project/outbound.py) refuses loopback, private, link-local and other non-public
# addresses, except these (comma-separated): hostnames ("llm.internal", "*.corp.example" for its
# subdomains) or IPs / CIDR networks ("127.0.0.1", "10.0.0.0/8").
OUTBOUND_ALLOWED_HOSTS = _host_list("OUTBOUND_ALLOWED_HOSTS")
# Model endpoints (an llm agent's model.base_url) pass the same check, with these hosts allowed
# too. The embedded single-user default allows loopback, for a local Ollama, vLLM or LM Studio;
# with DATABASE_URL set (a shared deployment) list them explicitly.
LLM_ENDPOINT_ALLOWED_HOSTS = _host_list("LLM_ENDPOINT_ALLOWED_HOSTS") or (
    ["127.0.0.1", "::1", "localhost"]
    if EMBEDDED and "LLM_ENDPOINT_ALLOWED_HOSTS" not in os.environ
    else []
)
SANDBOX_MEMORY_MB = _typed("SANDBOX_MEMORY_MB", int, 4096)
SANDBOX_PIDS = _typed("SANDBOX_PIDS", int, 512)
SANDBOX_CPU_S = _typed("SANDBOX_CPU_S", int, 1800)
# A session's sandbox stops after this many idle seconds (idle policy "stop", the default).
SANDBOX_IDLE_TIMEOUT_S = _typed("SANDBOX_IDLE_TIMEOUT_S", int, 900)
SANDBOX_PYTHON = os.environ.get("SANDBOX_PYTHON", "/usr/bin/python3")  # runs sbxd in a sandbox
# Output bytes kept per background process for clients that re-attach.
SANDBOX_PROCESS_RETAIN_BYTES = _typed("SANDBOX_PROCESS_RETAIN_BYTES", int, 1024 * 1024)


def _sandbox_data_dir() -> Path:
    if os.environ.get("SANDBOX_DATA_DIR"):
        return Path(os.environ["SANDBOX_DATA_DIR"])
    from sandboxes.local import default_data_dir

    return default_data_dir(BASE_DIR)


SANDBOX_DATA_DIR = _sandbox_data_dir()
WORKSPACE_ROOT = SANDBOX_DATA_DIR / "workspaces"
TOOLCHAIN_DIR = Path(os.environ.get("TOOLCHAIN_DIR", SANDBOX_DATA_DIR / "toolchain"))
# Coding-agent CLIs (OpenCode, Codex CLI, Aider, Claude Code), pinned, installed by the server
# and bound read-only into sandboxes (sessions/runners/architectures/install.py). Auto-install:
# on the first task that needs one (else `manage.py install_coding_agents` ahead of time).
CODING_AGENTS_DIR = Path(os.environ.get("CODING_AGENTS_DIR", SANDBOX_DATA_DIR / "coding-agents"))
CODING_AGENTS_AUTO_INSTALL = _bool("CODING_AGENTS_AUTO_INSTALL", True)
WORKSPACE_MAX_FILE_BYTES = _typed("WORKSPACE_MAX_FILE_BYTES", int, 100 * 1024 * 1024)
WORKSPACE_MAX_BYTES = _typed("WORKSPACE_MAX_BYTES", int, 1024 * 1024 * 1024)
WORKSPACE_MAX_FILES = _typed("WORKSPACE_MAX_FILES", int, 20000)

# MODEL PROVIDERS -------------------------------------------------------------------------------


def _credential_keys() -> list[str]:
    from providers.crypto import check_keys, derive_key

    raw = os.environ.get("CREDENTIALS_ENCRYPTION_KEYS", "")
    if not raw.strip():
        return [derive_key(SECRET_KEY)]
    try:
        return check_keys(raw.split(","))
    except ValueError as exc:  # the message names a key's position, never the key
        raise ImproperlyConfigured(
            f"CREDENTIALS_ENCRYPTION_KEYS: {exc} (expected comma-separated Fernet keys)"
        ) from None


def _llm_models() -> list[dict[str, Any]]:
    from providers.catalogue import parse_llm_models

    try:
        return parse_llm_models(os.environ.get("LLM_MODELS", ""))
    except ValueError as exc:
        raise ImproperlyConfigured(f"LLM_MODELS: {exc}") from None


# Stored provider credentials (providers app) are Fernet-encrypted: the first key encrypts, every
# key decrypts (rotation: put a new key first, run `manage.py rotate_credential_keys`, drop the
# old one). Unset: one key derived from SECRET_KEY (HKDF), so rotating SECRET_KEY without setting
# this first makes every stored credential unreadable (providers/crypto.py).
CREDENTIALS_ENCRYPTION_KEYS: list[str] = _credential_keys()
# The model catalogue listed by GET /api/v1/models next to the agents' models (JSON list of
# {"id", "provider", "base_url"?, "pricing"?: {"prompt_per_mtok", "completion_per_mtok"}}, USD).
LLM_MODELS: list[dict[str, Any]] = _llm_models()
# Team model access (docs/models.md): the models a team without its own policy may use, as
# names or globs ("gpt-4o*"), comma-separated; empty or "*": every model.
TEAM_MODELS_DEFAULT = [
    name.strip() for name in os.environ.get("TEAM_MODELS_DEFAULT", "").split(",") if name.strip()
]

# SCHEDULES -------------------------------------------------------------------------------------
# Cron schedules (docs/schedules.md). SCHEDULER_ENABLED starts the embedded scheduler loop in the
# server process (schedules.scheduler.run_scheduler); it does not govern the Celery beat entry.
# Every SCHEDULER_INTERVAL_S seconds a pass fires the due schedules, so a run starts at most about
# that long after its cron tick.
SCHEDULER_ENABLED = _bool("SCHEDULER_ENABLED", True)
SCHEDULER_INTERVAL_S = _typed("SCHEDULER_INTERVAL_S", float, 15.0)
if not SCHEDULER_INTERVAL_S > 0:
    raise ImproperlyConfigured(f"SCHEDULER_INTERVAL_S={SCHEDULER_INTERVAL_S} must be above 0")
if SCHEDULER_ENABLED:  # scale-out: beat fires them (the embedded default: the server process)
    CELERY_BEAT_SCHEDULE["schedules"] = {
        "task": "schedules.tasks.fire_due_schedules",
        "schedule": SCHEDULER_INTERVAL_S,
    }

# DEMO / BOOTSTRAP ------------------------------------------------------------------------------
SEED_DEMO = _bool("SEED_DEMO", EMBEDDED)

# LOGGING ---------------------------------------------------------------------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}

# ACCOUNTS: OAUTH2, SHARING, LIMITS (runtime_project/settings_accounts.py) ----------------------
from runtime_project.settings_accounts import *  # noqa: E402, F403
from runtime_project.settings_accounts import REST_FRAMEWORK_THROTTLING  # noqa: E402

REST_FRAMEWORK.update(REST_FRAMEWORK_THROTTLING)

# INTEGRATIONS AND SERVER MODES (runtime_project/settings_integrations.py) -----------------------
from runtime_project.settings_integrations import *  # noqa: E402, F403
from runtime_project.settings_integrations import AGENT_DOMAIN, WEBHOOKS_BEAT_SCHEDULE  # noqa: E402

CELERY_BEAT_SCHEDULE.update(WEBHOOKS_BEAT_SCHEDULE)

if AGENT_DOMAIN:  # <slug>.<AGENT_DOMAIN> host names (integrations/endpoints/domains.py)
    ALLOWED_HOSTS.append("." + AGENT_DOMAIN)

_hooks: list[str] = SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]  # type: ignore[assignment]
_hooks.append("sessions.apis.shared.add_shared_stream_schema")

# METRICS AND LOG FORMAT (runtime_project/settings_observability.py, docs/observability.md) -----
from runtime_project.settings_observability import *  # noqa: E402, F403
from runtime_project.settings_observability import with_log_format  # noqa: E402

LOGGING = with_log_format(LOGGING)

"""Settings for the agent runtime server, all read from the environment (django-environ).

Two ways to run, one code path (DESIGN §1): with nothing set, the embedded default (SQLite in WAL
mode under ``var/``, in-memory channel layer, inline executor, local sandbox); with
``DATABASE_URL`` / ``REDIS_URL`` set, PostgreSQL and Redis. Malformed values stop the process at
start with ``ImproperlyConfigured`` naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()


def _typed(name: str, cast: Any, default: Any) -> Any:
    """Read ``name`` with ``cast``; a malformed value fails at start with a clear message."""
    try:
        return env.get_value(name, cast=cast, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"{name}={os.environ.get(name)!r} is not a valid {cast.__name__}"
        ) from exc


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def _choice(name: str, default: str, choices: set[str]) -> str:
    value = os.environ.get(name) or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of {sorted(choices)}")
    return value


def _host_list(name: str) -> list[str]:
    """Comma-separated hostnames, IPs and CIDR networks (lower-cased); a malformed network fails."""
    entries = [e.strip().lower() for e in os.environ.get(name, "").split(",") if e.strip()]
    for entry in entries:
        if "/" in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ImproperlyConfigured(
                    f"{name}: {entry!r} is not a valid CIDR network"
                ) from None
    return entries


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
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "runtime_project.middleware.SecurityHeadersMiddleware",
]

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
            "BACKEND": "channels.layers.InMemoryChannelLayer",
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
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))

# STORAGE ---------------------------------------------------------------------------------------
# Workspace snapshots and artifacts go through Django's default storage: MEDIA_ROOT on this
# machine unless STORAGE_S3_BUCKET names a bucket on S3 or an S3-compatible store (MinIO, R2,
# Ceph), which every worker machine can reach, so a session can move between them (docs/storage.md).
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's bucket naming rules
_S3_REGION = re.compile(r"^[a-z0-9-]{1,32}$")  # "eu-west-1", "auto" (R2), "us-east-1" (MinIO)
_S3_ENV = (
    "STORAGE_S3_ENDPOINT_URL",
    "STORAGE_S3_REGION",
    "STORAGE_S3_ACCESS_KEY_ID",
    "STORAGE_S3_SECRET_ACCESS_KEY",
    "STORAGE_S3_PREFIX",
    "STORAGE_S3_ADDRESSING_STYLE",
)


def _s3_endpoint_url(name: str) -> str | None:
    """An ``http(s)://host[:port]`` URL or ``None``; never echoed back, it may carry userinfo."""
    raw = os.environ.get(name, "")
    if not raw:
        return None
    error = ImproperlyConfigured(
        f"{name} is not a valid endpoint URL (expected e.g. http://127.0.0.1:9000 or "
        "https://<account>.r2.cloudflarestorage.com, without credentials)"
    )
    try:
        parts = urlsplit(raw)
        port_ok = parts.port is None or 0 < parts.port < 65536  # .port raises on junk
    except ValueError:
        raise error from None
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or not port_ok
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
    ):
        raise error
    return raw


def _s3_prefix(name: str) -> str:
    """The key prefix (django-storages ``location``): ``a/b``, no empty, ``.`` or ``..`` part."""
    raw = os.environ.get(name, "").strip("/")
    if raw and any(part in {"", ".", ".."} or "\\" in part for part in raw.split("/")):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a valid key prefix (e.g. runtime/prod)")
    return raw


def _storages() -> dict[str, Any]:
    """Django's ``STORAGES``: S3Storage when ``STORAGE_S3_BUCKET`` is set, else the filesystem.

    Keys and the endpoint are never put in an error message. Without
    ``STORAGE_S3_ACCESS_KEY_ID``/``STORAGE_S3_SECRET_ACCESS_KEY``, boto3 finds credentials the
    standard way (``AWS_*`` env, shared config files, an instance or pod role).
    """
    storages: dict[str, Any] = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        # Django's own default; setting STORAGES replaces the whole dict, so it is spelled out.
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    bucket = os.environ.get("STORAGE_S3_BUCKET", "")
    if not bucket:
        stray = [name for name in _S3_ENV if os.environ.get(name)]
        if stray:  # a half-configured S3 would silently keep snapshots on this machine only
            raise ImproperlyConfigured(f"{stray[0]} is set but STORAGE_S3_BUCKET is not")
        return storages
    if not _S3_BUCKET.match(bucket) or ".." in bucket:
        raise ImproperlyConfigured(
            f"STORAGE_S3_BUCKET={bucket!r} is not a valid bucket name (3-63 characters: "
            "lower-case letters, digits, '.' and '-')"
        )
    endpoint_url = _s3_endpoint_url("STORAGE_S3_ENDPOINT_URL")
    region = os.environ.get("STORAGE_S3_REGION") or None
    if region is not None and not _S3_REGION.match(region):
        raise ImproperlyConfigured(f"STORAGE_S3_REGION={region!r} is not a valid region name")
    access_key = os.environ.get("STORAGE_S3_ACCESS_KEY_ID", "")
    secret_key = os.environ.get("STORAGE_S3_SECRET_ACCESS_KEY", "")
    if bool(access_key) != bool(secret_key):
        missing = "STORAGE_S3_SECRET_ACCESS_KEY" if access_key else "STORAGE_S3_ACCESS_KEY_ID"
        raise ImproperlyConfigured(
            f"{missing} is required when the other STORAGE_S3_* key is set (set both or neither)"
        )
    # MinIO and most self-hosted stores only answer path-style requests (host/bucket/key);
    # AWS prefers virtual-hosted style, which botocore picks by itself ("auto").
    addressing = _choice(
        "STORAGE_S3_ADDRESSING_STYLE",
        "path" if endpoint_url else "auto",
        {"auto", "path", "virtual"},
    )
    from botocore.config import Config

    options: dict[str, Any] = {
        "bucket_name": bucket,
        "endpoint_url": endpoint_url,
        "region_name": region,
        "location": _s3_prefix("STORAGE_S3_PREFIX"),
        # Objects stay private (bucket policy decides); URLs, if ever handed out, are signed and
        # short-lived.
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": 300,
        # Never replace an object by name: a snapshot is immutable once written.
        "file_overwrite": False,
        # S3File downloads a whole object before the first read; spool above 32 MiB to disk
        # instead of memory (the default, 0, keeps a 1 GiB snapshot in RAM).
        "max_memory_size": 32 * 1024 * 1024,
        # botocore's defaults (60 s connect timeout, legacy retries) would hold a request for
        # minutes when the store is down; fail in seconds with a 503 instead.
        "client_config": Config(
            s3={"addressing_style": addressing},
            signature_version="s3v4",
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    }
    if access_key:
        options["access_key"] = access_key
        options["secret_key"] = secret_key
    storages["default"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}
    return storages


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
    },
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
ONESHOT_MAX_WAIT_S = _typed("ONESHOT_MAX_WAIT_S", float, 600.0)
# How long a task may wait for an answer (ask_user, a tool approval) before it fails with
# wait_expired (OpenAI's requires_action runs expire after 10 minutes; a chat user may be slower).
TASK_WAIT_TIMEOUT_S = _typed("TASK_WAIT_TIMEOUT_S", float, 24 * 3600.0)
# call_agent: how deep agents may call agents (a child of a child of a task is depth 2).
LLM_MAX_AGENT_DEPTH = _typed("LLM_MAX_AGENT_DEPTH", int, 3)

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
    "ACCESS_TOKEN_EXPIRE_SECONDS": _typed("OAUTH2_ACCESS_TOKEN_EXPIRE_S", int, 3600),
    "REFRESH_TOKEN_EXPIRE_SECONDS": _typed("OAUTH2_REFRESH_TOKEN_EXPIRE_S", int, 30 * 24 * 3600),
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
SHARE_PROVIDER_TIMEOUT_S = _typed("SHARE_PROVIDER_TIMEOUT_S", float, 60.0)
# The export embeds workspace files (and event payloads kept in artifacts) up to this size each
# and this much in total; bigger files are listed without content. Event bodies stop after
# SHARE_EXPORT_MAX_EVENTS events or SHARE_EXPORT_MAX_EVENT_BYTES of event data.
SHARE_EXPORT_MAX_FILE_BYTES = _typed("SHARE_EXPORT_MAX_FILE_BYTES", int, 1024 * 1024)
SHARE_EXPORT_MAX_TOTAL_BYTES = _typed("SHARE_EXPORT_MAX_TOTAL_BYTES", int, 20 * 1024 * 1024)
SHARE_EXPORT_MAX_EVENTS = _typed("SHARE_EXPORT_MAX_EVENTS", int, 20000)
SHARE_EXPORT_MAX_EVENT_BYTES = _typed("SHARE_EXPORT_MAX_EVENT_BYTES", int, 64 * 1024 * 1024)
# An SSE stream opened with a share token re-checks the link at least this often (seconds, and
# on every heartbeat) and ends once it is revoked or expired.
SHARE_STREAM_RECHECK_S = _typed("SHARE_STREAM_RECHECK_S", float, 5.0)
_hooks: list[str] = SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]  # type: ignore[assignment]
_hooks.append("sessions.apis.shared.add_shared_stream_schema")

# LIMITS ----------------------------------------------------------------------------------------
# Request rates of the REST API (runtime_project/throttling.py, docs/limits.md), each
# "<requests>/<period>" (period s, min, hour or day) or "none": per credential (an API key, an
# OAuth2 app for one user, a browser session), per team (every credential acting in it; a
# team's own Team.rate_limit wins) and per client IP for unauthenticated requests. Counted in
# the default cache, so across processes when REDIS_URL is set.


def _rate(name: str, default: str) -> str | None:
    from accounts.limits import parse_rate

    try:
        return parse_rate(os.environ.get(name) or default)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def _count(name: str, default: int) -> int:
    value = int(_typed(name, int, default))
    if value < 0:
        raise ImproperlyConfigured(f"{name}={value} must be 0 or more")
    return value


THROTTLE_USER = _rate("THROTTLE_USER", "1200/min")
THROTTLE_TEAM = _rate("THROTTLE_TEAM", "6000/min")
THROTTLE_ANON = _rate("THROTTLE_ANON", "120/min")
# Per client IP and endpoint: POSTs to /o/token/, /o/login/, /o/revoke_token/, /o/introspect/.
THROTTLE_OAUTH = _rate("THROTTLE_OAUTH", "60/min")
# WebSocket handshakes per credential.
THROTTLE_WS_CONNECT = _rate("THROTTLE_WS_CONNECT", "120/min")
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = [
    "runtime_project.throttling.CredentialRateThrottle",
    "runtime_project.throttling.TeamRateThrottle",
    "runtime_project.throttling.AnonRateThrottle",
]
# For DRF's stock throttle classes; ours read THROTTLE_* at each request.
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "user": THROTTLE_USER,
    "team": THROTTLE_TEAM,
    "anon": THROTTLE_ANON,
}
# How many reverse proxies in front of the server append to X-Forwarded-For: the client IP of
# the anonymous rate is the one that many hops from the right. 0: REMOTE_ADDR, the header is
# ignored (a client could forge it).
REST_FRAMEWORK["NUM_PROXIES"] = _count("THROTTLE_NUM_PROXIES", 0)
# Active (queued, running or waiting) tasks per team, and live sandboxes per team; a team's
# Team.max_running_tasks / Team.max_sandboxes wins. 0: no limit. Over the limit a create gets
# 429 team_task_limit / team_sandbox_limit with Retry-After.
TEAM_MAX_RUNNING_TASKS = _count("TEAM_MAX_RUNNING_TASKS", 100)
TEAM_MAX_SANDBOXES = _count("TEAM_MAX_SANDBOXES", 10)
# One task at a time across the whole server (a single-tenant box, a GPU, a licence): creating a
# task while any task is queued, running or waiting gets 409 server_busy.
EXCLUSIVE_MODE = _bool("EXCLUSIVE_MODE", False)

"""``STORAGES`` from ``STORAGE_S3_*`` (read by ``runtime_project.settings``)."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from runtime_project.envvars import choice

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


def build_storages() -> dict[str, Any]:
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
    addressing = choice(
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

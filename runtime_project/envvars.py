"""Reading settings from the environment (django-environ): every malformed value stops the
process at start with a one-line ``ImproperlyConfigured`` naming the variable (and never
echoing a value that may be secret)."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()


def typed(name: str, cast: Any, default: Any) -> Any:
    """Read ``name`` with ``cast``; a malformed value fails at start with a clear message."""
    try:
        return env.get_value(name, cast=cast, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"{name}={os.environ.get(name)!r} is not a valid {cast.__name__}"
        ) from exc


def boolean(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def choice(name: str, default: str, choices: set[str]) -> str:
    value = os.environ.get(name) or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of {sorted(choices)}")
    return value


def host_list(name: str) -> list[str]:
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


def rate(name: str, default: str) -> str | None:
    """A request rate (``"<n>/<period>"`` or ``none``) normalised for DRF; ``None``: no limit."""
    from accounts.limits import parse_rate

    try:
        return parse_rate(os.environ.get(name) or default)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def count(name: str, default: int) -> int:
    """A non-negative integer (``0`` usually meaning "no limit")."""
    value = int(typed(name, int, default))
    if value < 0:
        raise ImproperlyConfigured(f"{name}={value} must be 0 or more")
    return value

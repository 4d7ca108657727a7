"""Backend registry: ``settings.SANDBOX_BACKEND`` → one process-wide :class:`SandboxBackend`.

Backends register themselves with :func:`register_backend` when their module is imported; the
registry imports a backend's module lazily (by dotted path) the first time it is selected, so
e.g. the ``docker`` SDK is never imported on a server that uses ``local``.

``SANDBOX_BACKEND`` is a registered name (``local``, ``docker``, ``fake``) or a dotted path to a
:class:`SandboxBackend` subclass (``myproject.sandboxes.MyBackend``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from sandboxes.base import SandboxBackend

B = TypeVar("B", bound=type[SandboxBackend])

DEFAULT_BACKEND = "local"

# name → module whose import registers the backend (imported only when selected)
BACKEND_MODULES: dict[str, str] = {
    "local": "sandboxes.backends.local",
    "docker": "sandboxes.backends.docker",
    "fake": "sandboxes.backends.fake",
}

_registry: dict[str, type[SandboxBackend]] = {}
_instance: SandboxBackend | None = None
_instance_key: str | None = None
_lock = threading.Lock()


def register_backend(name: str) -> Callable[[B], B]:
    """Class decorator: make the backend class selectable as ``SANDBOX_BACKEND = name``."""

    def decorator(cls: B) -> B:
        cls.name = name
        _registry[name] = cls
        return cls

    return decorator


def _resolve(key: str) -> type[SandboxBackend]:
    if key in _registry:
        return _registry[key]
    module = BACKEND_MODULES.get(key)
    if module is not None:
        try:
            __import__(module)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"SANDBOX_BACKEND={key!r}: cannot import {module}: {exc}"
            ) from exc
        if key in _registry:
            return _registry[key]
        raise ImproperlyConfigured(f"{module} did not register a backend named {key!r}")
    if "." in key:
        try:
            cls = import_string(key)
        except ImportError as exc:
            raise ImproperlyConfigured(f"SANDBOX_BACKEND={key!r}: {exc}") from exc
        if isinstance(cls, type) and issubclass(cls, SandboxBackend):
            return cls
        raise ImproperlyConfigured(f"SANDBOX_BACKEND={key!r} is not a SandboxBackend subclass")
    known = ", ".join(sorted(set(BACKEND_MODULES) | set(_registry)))
    raise ImproperlyConfigured(f"Unknown SANDBOX_BACKEND {key!r} (known: {known})")


def get_backend() -> SandboxBackend:
    """Return the process-wide backend selected by ``settings.SANDBOX_BACKEND`` (default local).

    The instance is created on first use and reused afterwards; if the setting changes (tests
    with ``override_settings``) a new instance is made for the new value.
    """
    global _instance, _instance_key
    key = str(getattr(settings, "SANDBOX_BACKEND", DEFAULT_BACKEND) or DEFAULT_BACKEND)
    with _lock:
        if _instance is None or _instance_key != key:
            _instance = _resolve(key)()
            _instance_key = key
        return _instance


def reset_backends() -> None:
    """Forget the singleton (tests): the next :func:`get_backend` builds a fresh instance.

    Registered classes are kept (their modules stay imported).
    """
    global _instance, _instance_key
    with _lock:
        _instance = None
        _instance_key = None

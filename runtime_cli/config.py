"""Where the CLI finds the server and its API key.

Precedence, highest first: ``--url``/``--key`` flags, ``RUNTIME_URL``/``RUNTIME_API_KEY``
environment variables, the config file written by ``runtime login``, then the default URL
``http://127.0.0.1:8000`` (``make serve``). The config file is
``$RUNTIME_CONFIG``, else ``$XDG_CONFIG_HOME/agent-runtime/config.toml``, else
``~/.config/agent-runtime/config.toml``; it holds the key, so it is written with mode 0600.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:8000"


class UsageError(Exception):
    """A mistake in how the CLI was called (exit status 2)."""


@dataclass(frozen=True)
class Config:
    url: str  # http(s)://host[:port][/prefix], no trailing slash
    api_key: str | None
    source: str  # where the key came from: "flag", "env", a config file path, or "none"

    @property
    def ws_url(self) -> str:
        """``url`` with the ws/wss scheme (the WebSocket routes share the HTTP origin)."""
        scheme, rest = self.url.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest


def config_path() -> Path:
    if explicit := os.environ.get("RUNTIME_CONFIG"):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agent-runtime" / "config.toml"


def read_file(path: Path | None = None) -> dict[str, str]:
    """The config file's ``url`` and ``api_key`` (an empty dict when there is no file).

    Raises:
        UsageError: the file exists but is not valid TOML.
    """
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read the config file {path}: {exc}") from exc
    return {k: str(v) for k, v in data.items() if k in ("url", "api_key") and v}


def normalize_url(url: str) -> str:
    """``url`` without a trailing slash, checked to be an http(s) URL with a host.

    Raises:
        UsageError: anything else (e.g. ``localhost:8000`` without a scheme).
    """
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"the server URL must look like http://host:port, not {url!r}")
    return url


def resolve(*, url: str | None, key: str | None) -> Config:
    """The effective configuration for one invocation (see the module docstring)."""
    stored = read_file()
    if key:
        api_key, source = key, "flag"
    elif env_key := os.environ.get("RUNTIME_API_KEY"):
        api_key, source = env_key, "env"
    elif "api_key" in stored:
        api_key, source = stored["api_key"], str(config_path())
    else:
        api_key, source = None, "none"
    chosen = url or os.environ.get("RUNTIME_URL") or stored.get("url") or DEFAULT_URL
    return Config(url=normalize_url(chosen), api_key=api_key, source=source)


def write_file(*, url: str, api_key: str, path: Path | None = None) -> Path:
    """Save ``url`` and ``api_key`` (replacing the file; mode 0600, parents 0700)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # JSON string literals are valid TOML basic strings for the characters URLs and keys use.
    text = f"url = {json.dumps(url)}\napi_key = {json.dumps(api_key)}\n"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path

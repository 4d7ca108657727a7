"""Installing an architecture's CLI, pinned, where sandboxes can run it (issue 12).

Sandboxes have no network (only the model endpoint through their egress proxy), so a CLI is
installed by the server, outside any sandbox, into ``settings.CODING_AGENTS_DIR/<name>-<version>``
(npm packages with ``npm install --prefix``; PyPI packages in a virtualenv of the sandbox's
``python3``, made with uv). The sandbox binds that directory read-only at the same path
(``sandbox_spec``), like the Python toolchain. A directory is complete when its stamp file
exists (written last), so an interrupted install is redone, never half-used; a file lock keeps
two workers from installing the same CLI at once. Versions are pinned by the architecture
(``Package``); npm resolves the package's own dependencies at install time.

Entry points: ``manage.py install_coding_agents [names]`` (ahead of time, e.g. in an image)
and :func:`ensure_installed` (the runner, on first use, when ``CODING_AGENTS_AUTO_INSTALL``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from runtime_project.exceptions import ApplicationError
from sessions.runners.architectures.base import Architecture
from sessions.runners.architectures.codex import CATALOG_FILE

STAMP = ".agent-runtime-installed.json"
INSTALL_TIMEOUT_S = 900


class ArchitectureNotInstalled(ApplicationError):
    """The CLI is not installed and may not be installed now (HTTP 409 if it reaches a view)."""

    status_code = 409
    code = "architecture_not_installed"


class ArchitectureInstallFailed(ApplicationError):
    """Installing the CLI failed (``details``: the installer's exit code and output tail)."""

    status_code = 502
    code = "architecture_install_failed"


def install_dir(architecture: Architecture) -> Path:
    """``CODING_AGENTS_DIR/<name>-<version>`` (absolute)."""
    root = Path(settings.CODING_AGENTS_DIR).resolve()
    return root / f"{architecture.name}-{architecture.package.version}"


def executable(architecture: Architecture) -> Path | None:
    """The installed CLI's executable, or None when it is not (completely) installed."""
    directory = install_dir(architecture)
    if not (directory / STAMP).is_file():
        return None
    for relative in architecture.package.executables:
        path = directory / relative
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def ensure_installed(
    architecture: Architecture, *, log: Callable[[str], None] = lambda _m: None,
    allow_install: bool | None = None,
) -> Path:  # fmt: skip
    """The CLI's executable, installing it first when missing and ``allow_install`` (default
    ``settings.CODING_AGENTS_AUTO_INSTALL``). ``log`` receives progress lines.

    Raises:
        ArchitectureNotInstalled: missing and not to be installed now.
        ArchitectureInstallFailed: the installer failed or left no executable.
    """
    found = executable(architecture)
    if found is not None:
        return found
    if allow_install is None:
        allow_install = bool(settings.CODING_AGENTS_AUTO_INSTALL)
    package = architecture.package
    if not allow_install:
        raise ArchitectureNotInstalled(
            f"{package.spec} is not installed; run `manage.py install_coding_agents "
            f"{architecture.name}` (or set CODING_AGENTS_AUTO_INSTALL=true).",
            details={"architecture": architecture.name, "package": package.spec},
        )
    directory = install_dir(architecture)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing it right now
        found = executable(architecture)
        if found is not None:
            return found
        log(f"installing {package.spec} into {directory}")
        started = time.monotonic()
        shutil.rmtree(directory, ignore_errors=True)  # an interrupted earlier attempt
        directory.mkdir(parents=True)
        _install(architecture, directory)
        (directory / STAMP).write_text(
            json.dumps({"package": package.spec, "installed_at": time.time()})
        )
        _make_world_readable(directory)
        found = executable(architecture)
        if found is None:
            raise ArchitectureInstallFailed(
                f"{package.spec} installed, but none of its executables exists.",
                details={"architecture": architecture.name,
                         "looked_for": list(package.executables)},
            )  # fmt: skip
        log(f"installed {package.spec} in {time.monotonic() - started:.1f} s")
        return found


def _install(architecture: Architecture, directory: Path) -> None:
    package = architecture.package
    if package.manager == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise ArchitectureInstallFailed(
                "npm is not installed on the server (apt-get install npm).",
                details={"architecture": architecture.name},
            )
        argv = [npm, "install", "--prefix", str(directory), "--no-audit", "--no-fund",
                "--ignore-scripts", "--no-save", package.spec, *package.extra]  # fmt: skip
        _run(argv, architecture)
    else:
        from sessions.management.commands.install_toolchain import find_uv, sandbox_python

        uv = find_uv()
        python = sandbox_python()
        if uv is None:
            raise ArchitectureInstallFailed(
                "uv is not available on the server (make setup installs it).",
                details={"architecture": architecture.name},
            )
        _run([uv, "venv", "--quiet", "--python", python, str(directory)], architecture)
        _run([uv, "pip", "install", "--quiet", "--python", str(directory / "bin/python"),
              package.spec, *package.extra], architecture)  # fmt: skip
    if architecture.name == "codex":
        _save_codex_catalog(architecture, directory)


def _save_codex_catalog(architecture: Architecture, directory: Path) -> None:
    """Codex's bundled model catalog, for ``codex.catalog_entry`` (offline, ~0.3 s)."""
    binary = next((directory / p for p in architecture.package.executables
                   if (directory / p).is_file()), None)  # fmt: skip
    if binary is None:
        return
    home = directory / ".catalog-home"
    home.mkdir(exist_ok=True)
    out = _run([str(binary), "debug", "models"], architecture,
               env={"HOME": str(home), "CODEX_HOME": str(home), "PATH": os.defpath})  # fmt: skip
    shutil.rmtree(home, ignore_errors=True)
    (directory / CATALOG_FILE).write_text(out)


def _run(argv: list[str], architecture: Architecture, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
            env={**os.environ, **(env or {})} if env is not None else None,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ArchitectureInstallFailed(
            f"Installing {architecture.package.spec} failed: {exc}",
            details={"architecture": architecture.name},
        ) from exc
    if proc.returncode != 0:
        raise ArchitectureInstallFailed(
            f"Installing {architecture.package.spec} failed (exit code {proc.returncode}).",
            details={"architecture": architecture.name, "exit_code": proc.returncode,
                     "output": (proc.stdout + proc.stderr)[-2000:]},
        )  # fmt: skip
    return proc.stdout


def _make_world_readable(root: Path) -> None:
    """Sandboxes run as unprivileged uids: everything readable, directories and executables
    searchable/executable by all."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)  # noqa: S103 - read by the sandbox's unprivileged uid
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            mode = os.stat(path).st_mode
            os.chmod(path, 0o755 if mode & 0o111 else 0o644)

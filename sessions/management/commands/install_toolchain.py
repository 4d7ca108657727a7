"""Install the read-only Python toolchain that sandboxes see.

Sandboxes run without network (``SANDBOX_NETWORK=none``) as an unprivileged uid, so code inside
one cannot ``pip install pytest``; a ``command`` agent that runs a workspace's tests would find no
test runner. The test runner therefore comes from here: this command installs the pinned packages
of ``sandboxes/toolchain-requirements.txt`` (pytest, ipykernel with jupyter_client, pip) and a
copy of the ``runtime_client`` package (the ``python`` kind's kernel bridge) into
``settings.TOOLCHAIN_DIR``, for the interpreter the sandbox runs (``/usr/bin/python3``, else
``/usr/local/bin/python3``). The local sandbox backend binds that directory read-only at the same
path and puts it on ``PYTHONPATH``, so ``python3 -m pytest`` works inside the sandbox.

It is idempotent and cheap when nothing changed: a stamp file in the directory records the
requirements file's sha256 and the interpreter, and a matching stamp means there is nothing to do.
Otherwise it installs into a temporary sibling directory with ``uv pip install --target`` (the uv
that scripts/setup.sh provides; ``python -m pip install --target`` when there is no uv) and renames
it into place, so a sandbox never sees a half-installed toolchain. Files are made world-readable
(directories 0755, files 0644, executables 0755) because the sandbox runs as uid 65534.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

STAMP_NAME = ".toolchain-stamp.json"
SANDBOX_PYTHON_CANDIDATES = ("/usr/bin/python3", "/usr/local/bin/python3")


def requirements_file() -> Path:
    return Path(settings.BASE_DIR) / "sandboxes" / "toolchain-requirements.txt"


def runtime_client_dir() -> Path:
    return Path(settings.BASE_DIR) / "runtime_client"


def runtime_client_sha256() -> str:
    """Hash of the ``runtime_client`` sources copied into the toolchain (the kernel bridge of the
    ``python`` agent kind runs from there), so an edit reinstalls."""
    digest = hashlib.sha256()
    for path in sorted(runtime_client_dir().glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def sandbox_python() -> str:
    """The interpreter sandboxes run: ``settings.SANDBOX_PYTHON`` if set, else the first of
    ``SANDBOX_PYTHON_CANDIDATES`` that exists (a system path, so the sandbox sees it too)."""
    configured = getattr(settings, "SANDBOX_PYTHON", None)
    if configured:
        return str(configured)
    for candidate in SANDBOX_PYTHON_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise CommandError(
        f"no sandbox interpreter found (looked for {', '.join(SANDBOX_PYTHON_CANDIDATES)}); "
        "install python3 or pass --python"
    )


def find_uv() -> str | None:
    """uv from ``$UV`` (set by scripts/setup.sh), then PATH, then where setup.sh installs it."""
    candidates = [
        os.environ.get("UV"),
        shutil.which("uv"),
        str(Path(settings.BASE_DIR) / "var/tools/uv/bin/uv"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _python_identity(python: str) -> str:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.implementation.name, sys.version.split()[0])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CommandError(f"cannot run the sandbox interpreter {python}: {exc}") from exc
    return f"{os.path.realpath(python)} {out.stdout.strip()}"


def _read_stamp(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _make_world_readable(root: Path) -> None:
    """0755 for directories and executables, 0644 for other files; symlinks are left alone
    (chmod would follow them out of the tree; os.walk does not descend into them)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)  # noqa: S103 - world-readable on purpose: the sandbox uid reads it
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            executable = os.stat(path).st_mode & 0o111
            os.chmod(path, 0o755 if executable else 0o644)


class Command(BaseCommand):
    help = (
        "Install the read-only Python toolchain (pytest) bound into sandboxes into TOOLCHAIN_DIR."
    )
    # Part of setup, run before migrate: it touches neither models nor URLs, so the system checks
    # would only cost time (and fail on an unrelated half-edited app).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="reinstall even if the stamp matches"
        )
        parser.add_argument(
            "--python", help="interpreter the sandbox runs (default: /usr/bin/python3)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        target = Path(settings.TOOLCHAIN_DIR)
        requirements = requirements_file()
        python = options["python"] or sandbox_python()
        stamp = {
            "requirements_sha256": hashlib.sha256(requirements.read_bytes()).hexdigest(),
            "runtime_client_sha256": runtime_client_sha256(),
            "python": _python_identity(python),
        }

        if not options["force"] and _read_stamp(target) == stamp:
            self.stdout.write(f"toolchain: up to date in {target}")
            return

        target.parent.mkdir(parents=True, exist_ok=True)
        # Two setups at once (make serve and make test in parallel) must not swap directories
        # under each other: serialise on a lock file and look at the stamp again once inside.
        with open(target.parent / f".{target.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not options["force"] and _read_stamp(target) == stamp:
                self.stdout.write(f"toolchain: up to date in {target}")
                return
            started = time.monotonic()
            self._install(target, requirements, python, stamp)
        self.stdout.write(
            f"toolchain: installed {requirements.name} into {target} for {stamp['python']} "
            f"in {time.monotonic() - started:.1f}s"
        )

    def _install(
        self, target: Path, requirements: Path, python: str, stamp: dict[str, Any]
    ) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-new-", dir=target.parent))
        try:
            subprocess.run(self._installer_command(staging, requirements, python), check=True)
            # The kernel bridge (python kind) imports runtime_client inside the sandbox; it needs
            # no Django, only jupyter_client from the pinned requirements above.
            shutil.copytree(
                runtime_client_dir(),
                staging / "runtime_client",
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
            subprocess.run(
                [python, "-m", "compileall", "-q", str(staging / "runtime_client")], check=True
            )
            (staging / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n")
            _make_world_readable(staging)
            old = None
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
                target.rename(old / target.name)
            staging.rename(target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except subprocess.CalledProcessError as exc:
            raise CommandError(
                f"toolchain install failed (exit {exc.returncode}): {' '.join(exc.cmd)}"
            ) from exc
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _installer_command(self, staging: Path, requirements: Path, python: str) -> list[str]:
        uv = find_uv()
        if uv:
            # --link-mode copy: uv hard-links from its cache by default, and the chmod that follows
            # would then change the cache's files too. Bytecode is compiled now because the
            # sandbox cannot write __pycache__ into a read-only bind.
            return [
                uv, "pip", "install", "--quiet", "--require-hashes", "--link-mode", "copy",
                "--compile-bytecode", "--python", python, "--target", str(staging),
                "-r", str(requirements),
            ]  # fmt: skip
        if importlib.util.find_spec("pip") is not None:
            # Everything pinned is a pure-Python wheel, so this interpreter's pip can install for
            # the sandbox's interpreter; --python-version makes it resolve markers for that one.
            version = _python_identity(python).split()[-1]
            major_minor = ".".join(version.split(".")[:2])
            return [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--no-warn-script-location", "--require-hashes", "--only-binary=:all:",
                "--python-version", major_minor, "--target", str(staging), "-r", str(requirements),
            ]  # fmt: skip
        raise CommandError("neither uv nor pip is available; run scripts/setup.sh first")

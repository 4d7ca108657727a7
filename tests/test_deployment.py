"""The ways to run the server stay wired together: docker-compose.yml, the Dockerfile, the Makefile,
scripts/setup.sh, .ci/run and the README's quick start, plus the sandbox toolchain installer.

Nothing here starts containers or touches the network; the slowest test runs pytest once on a
selection that matches nothing, to prove that "no tests collected" fails `make test`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent
SHELL_FENCES = {"sh", "bash", "shell", "console", "shell-session", "zsh"}


# helpers ---------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME-default}`` / ``${NAME}`` with the defaults only,
    so the assertions see the file as `docker compose config` would on a machine with no .env."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: _interpolate(str(value)) for key, value in env.items()}


def _command(service: dict[str, Any]) -> str:
    command = service.get("command") or ""
    return " ".join(command) if isinstance(command, list) else str(command)


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(_interpolate(str(entry)).split(":")[-1].split("/")[0]))
    return ports


def _script_lines(path: Path) -> list[str]:
    """Non-comment lines of a shell script, so a commented-out command does not count."""
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _readme_commands(text: str) -> list[str]:
    """Commands in the README's fenced shell blocks, in order (``$ `` prompts stripped, comments
    dropped). Blocks tagged sh/bash/shell/console count; untagged blocks count only when no block
    is tagged, so an untagged diagram cannot shadow the quick start."""
    blocks = re.findall(
        r"^```[ \t]*([\w-]*)[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL
    )
    tagged = [body for lang, body in blocks if lang.lower() in SHELL_FENCES]
    bodies = tagged or [body for lang, body in blocks if not lang]
    commands = []
    for body in bodies:
        for line in body.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


# docker-compose.yml ----------------------------------------------------------------------------


def test_compose_has_the_five_services():
    services = _compose()["services"]
    assert {"web", "worker", "beat", "postgres", "redis"} <= set(services)


@pytest.mark.parametrize("name", ["web", "worker"])
def test_web_and_worker_build_from_the_dockerfile(name):
    service = _compose()["services"][name]
    build = service["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context).resolve() == ROOT
    assert (ROOT / context / dockerfile).is_file()
    assert service.get("init") is True


def test_web_exposes_8000_and_worker_and_beat_run_celery():
    services = _compose()["services"]
    assert 8000 in _container_ports(services["web"])
    assert "celery -A runtime_project worker" in _command(services["worker"])
    assert "celery -A runtime_project beat" in _command(services["beat"])
    assert "celery" not in _command(services["web"])
    # The Procfile (deployments without Docker) runs the same processes.
    procfile = (ROOT / "Procfile").read_text()
    assert "celery -A runtime_project worker" in procfile and "runtime_project.serve" in procfile


@pytest.mark.parametrize("name", ["web", "worker"])
def test_env_wires_database_and_redis_to_their_services(name):
    services = _compose()["services"]
    env = _environment(services[name])

    database = urlsplit(env["DATABASE_URL"])
    assert database.scheme in {"postgres", "postgresql", "pgsql"}
    assert database.hostname == "postgres"
    assert database.path.lstrip("/") == _environment(services["postgres"]).get(
        "POSTGRES_DB", "postgres"
    )

    redis = urlsplit(env["REDIS_URL"])
    assert redis.scheme == "redis"
    assert redis.hostname == "redis"

    assert env["TASK_EXECUTOR"] == "celery"
    assert env["SECRET_KEY"], "settings refuse to start on PostgreSQL without SECRET_KEY"
    assert {"postgres", "redis"} <= set(services[name]["depends_on"])


def test_dependencies_are_waited_for_by_health():
    services = _compose()["services"]
    for name in ("web", "worker"):
        for dependency, condition in services[name]["depends_on"].items():
            assert condition["condition"] == "service_healthy", (name, dependency)
            assert "healthcheck" in services[dependency], dependency
    # Only web migrates, so the two containers never run migrations at the same time.
    assert _environment(services["worker"]).get("RUN_MIGRATIONS") == "0"


def test_web_and_worker_share_the_var_volume():
    compose = _compose()
    mounts = {}
    for name in ("web", "worker"):
        mounts[name] = {
            str(volume).split(":")[0]: str(volume).split(":")[1]
            for volume in compose["services"][name]["volumes"]
        }
    shared = set(mounts["web"]) & set(mounts["worker"]) & set(compose["volumes"])
    assert any(mounts["web"][vol] == mounts["worker"][vol] == "/app/var" for vol in shared)


# Dockerfile and setup agree --------------------------------------------------------------------


def test_dockerfile_and_setup_pin_the_same_uv():
    dockerfile = (ROOT / "Dockerfile").read_text()
    setup = (ROOT / "scripts/setup.sh").read_text()
    docker_uv = re.search(r"\buv==([\w.]+)", dockerfile)
    setup_uv = re.search(r"^UV_VERSION=([\w.]+)", setup, flags=re.MULTILINE)
    assert docker_uv
    assert setup_uv
    assert docker_uv.group(1) == setup_uv.group(1)
    assert re.search(r"^FROM python:3\.11-slim-bookworm\b", dockerfile, flags=re.MULTILINE)
    assert "uv sync --frozen --no-dev" in dockerfile
    assert "scripts/docker-entrypoint.sh" in dockerfile


@pytest.mark.parametrize(
    "script", [".ci/run", "scripts/setup.sh", "scripts/test.sh", "scripts/docker-entrypoint.sh"]
)
def test_scripts_parse(script):
    path = ROOT / script
    assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True, timeout=30)


# .ci/run ---------------------------------------------------------------------------------------


def test_ci_exports_services_and_runs_the_readme_test_command():
    lines = _script_lines(ROOT / ".ci/run")
    assert "export DATABASE_URL=postgres://postgres@127.0.0.1:5432/agent_runtime" in lines
    assert "export REDIS_URL=redis://127.0.0.1:6379/0" in lines
    assert any(re.match(r"make test\b", line) for line in lines)
    assert any(re.match(r"make lint\b", line) for line in lines)
    assert "set -euo pipefail" in lines


# README and Makefile ---------------------------------------------------------------------------


def test_readme_quick_start_is_make_serve_then_make_test():
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md is not written yet")
    assert _readme_commands(readme.read_text())[:2] == ["make serve", "make test"]


def test_readme_command_parser():
    text = (
        "Intro\n\n```\n+--diagram--+\n```\n\n"
        "```bash\n$ make serve\n```\n\nthen\n\n```sh\n# run it\nmake test\n```\n"
    )
    assert _readme_commands(text) == ["make serve", "make test"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_targets_run_setup_then_the_right_commands():
    def dry_run(*args: str) -> list[str]:
        out = subprocess.run(["make", "-n", "-C", str(ROOT), "--no-print-directory", *args],
                             check=True, capture_output=True, text=True, timeout=30)  # fmt: skip
        return [line for line in out.stdout.splitlines() if line.strip()]

    serve = dry_run("serve", "HOST=0.0.0.0", "PORT=9999")
    assert "scripts/setup.sh" in serve[0]
    assert serve[1:] == [
        ".venv/bin/python manage.py migrate --noinput",
        ".venv/bin/python manage.py bootstrap --host 0.0.0.0 --port 9999",
        "exec .venv/bin/python -m runtime_project.serve --server uvicorn --host 0.0.0.0 --port 9999",
    ]
    with_admin_port = dry_run("serve", "HOST=0.0.0.0", "PORT=9999", "ADMIN_PORT=9998")
    assert with_admin_port[-1] == (
        "exec .venv/bin/python -m runtime_project.serve --server uvicorn --host 0.0.0.0 "
        "--port 9999 --admin-port 9998"
    )
    assert dry_run("serve", "SERVER=daphne")[-1] == (
        "exec .venv/bin/python -m runtime_project.serve --server daphne --host 127.0.0.1 --port 8000"
    )
    test = dry_run("test", "PYTEST_ARGS=-k events -x")
    assert "scripts/setup.sh" in test[0]
    assert test[1:] == ["bash scripts/test.sh -k events -x"]


def test_no_tests_collected_fails_the_test_command():
    """pytest exits 5 when a selection matches nothing; scripts/test.sh (the `make test` recipe
    after setup) must pass that on as a failure rather than a green run."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/test.sh"), str(Path(__file__)), "-k", "no_such_test_name_xyz",
         "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 5, result.stdout + result.stderr
    assert "collected no tests (exit 5)" in result.stderr


# sandbox toolchain -----------------------------------------------------------------------------


def test_toolchain_requirements_match_the_lock():
    """The sandbox's pytest is the one the project tests with, and every line is pinned. pip is
    the one package the project itself does not lock (it is for agents, not for us)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {package["name"]: package["version"] for package in lock["package"]}
    text = (ROOT / "sandboxes/toolchain-requirements.txt").read_text().replace("\\\n", " ")
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([\w.]+)", text, flags=re.MULTILINE))
    assert {"pytest", "iniconfig", "packaging", "pluggy", "pygments", "pip"} <= set(pins)
    for name, version in pins.items():
        if name != "pip":
            assert locked.get(name.lower()) == version, name


FAKE_UV = """#!{python}
# Stands in for `uv pip install --target DIR ...`: writes a package and a script, counts calls.
import pathlib, sys
args = sys.argv[1:]
target = pathlib.Path(args[args.index("--target") + 1])
(target / "fakepkg").mkdir()
(target / "fakepkg" / "__init__.py").write_text("")
(target / "bin").mkdir()
(target / "bin" / "fake").write_text("#!/bin/sh\\n")
(target / "bin" / "fake").chmod(0o700)
(target / "private.txt").write_text("x")
(target / "private.txt").chmod(0o600)
calls = pathlib.Path({calls!r})
before = calls.read_text() if calls.exists() else ""
calls.write_text(before + " ".join(args) + "\\n")
"""


def test_install_toolchain_installs_world_readable_once(tmp_path, settings, monkeypatch, capsys):
    calls = tmp_path / "calls.txt"
    fake_uv = tmp_path / "uv"
    fake_uv.write_text(FAKE_UV.format(python=sys.executable, calls=str(calls)))
    fake_uv.chmod(0o755)
    monkeypatch.setenv("UV", str(fake_uv))
    settings.TOOLCHAIN_DIR = tmp_path / "data" / "toolchain"
    toolchain = settings.TOOLCHAIN_DIR

    call_command("install_toolchain", python=sys.executable)
    assert "toolchain: installed" in capsys.readouterr().out
    args = calls.read_text().split()
    assert args[:2] == ["pip", "install"]
    assert args[args.index("--python") + 1] == sys.executable
    assert args[args.index("-r") + 1] == str(ROOT / "sandboxes/toolchain-requirements.txt")

    # Readable (and where executable, runnable) by the sandbox's uid 65534.
    assert stat.S_IMODE(toolchain.stat().st_mode) == 0o755
    assert stat.S_IMODE((toolchain / "fakepkg").stat().st_mode) == 0o755
    assert stat.S_IMODE((toolchain / "fakepkg" / "__init__.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((toolchain / "private.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((toolchain / "bin" / "fake").stat().st_mode) == 0o755
    stamp = json.loads((toolchain / ".toolchain-stamp.json").read_text())
    requirements = (ROOT / "sandboxes/toolchain-requirements.txt").read_bytes()
    assert stamp["requirements_sha256"] == hashlib.sha256(requirements).hexdigest()
    # Only the toolchain is left behind: no staging directories.
    assert sorted(p.name for p in toolchain.parent.iterdir() if not p.name.endswith(".lock")) == [
        "toolchain"
    ]

    # Second run: the stamp matches, the installer is not called.
    call_command("install_toolchain", python=sys.executable)
    assert "up to date" in capsys.readouterr().out
    assert len(calls.read_text().splitlines()) == 1

    # --force reinstalls and swaps the directory in whole.
    (toolchain / "stale.txt").write_text("old")
    call_command("install_toolchain", python=sys.executable, force=True)
    assert len(calls.read_text().splitlines()) == 2
    assert not (toolchain / "stale.txt").exists()
    assert (toolchain / "fakepkg" / "__init__.py").exists()


def test_install_toolchain_failure_keeps_the_old_toolchain(tmp_path, settings, monkeypatch):
    from django.core.management.base import CommandError

    failing_uv = tmp_path / "uv"
    failing_uv.write_text("#!/bin/sh\nexit 3\n")
    failing_uv.chmod(0o755)
    monkeypatch.setenv("UV", str(failing_uv))
    settings.TOOLCHAIN_DIR = tmp_path / "toolchain"
    settings.TOOLCHAIN_DIR.mkdir()
    (settings.TOOLCHAIN_DIR / "kept.txt").write_text("old")

    with pytest.raises(CommandError, match="exit 3"):
        call_command("install_toolchain", python=sys.executable)
    assert (settings.TOOLCHAIN_DIR / "kept.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".toolchain-")] == []


def test_install_toolchain_defaults_to_a_system_interpreter(settings):
    from sessions.management.commands.install_toolchain import sandbox_python

    settings.SANDBOX_PYTHON = None
    expected = next(
        (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None
    )
    if expected is None:
        pytest.skip("no system python3 on this machine")
    assert sandbox_python() == expected

"""Helpers for tests that start real server processes (daphne, run_worker) on the test DB."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """URL of the database the tests use (pytest-django's test DB), for child processes."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def child_env(**extra: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        SANDBOX_DATA_DIR=str(settings.SANDBOX_DATA_DIR),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        SECRET_KEY=settings.SECRET_KEY,
        CI="true",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def daphne_argv(port: int) -> list[str]:
    """The command that serves the ASGI app (HTTP + WebSocket) on 127.0.0.1:``port``."""
    return [
        sys.executable,
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "runtime_project.asgi:application",
    ]


def uvicorn_argv(port: int, admin_port: int | None = None) -> list[str]:
    """The command that serves the same ASGI app under uvicorn (``runtime_project.serve``, what
    ``make serve`` runs) on 127.0.0.1:``port`` (and the admin on ``admin_port``)."""
    argv = [sys.executable, "-m", "runtime_project.serve", "--server", "uvicorn"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    return argv + (["--admin-port", str(admin_port)] if admin_port is not None else [])


SERVERS = ("daphne", "uvicorn")


def server_argv(kind: str, port: int, admin_port: int | None = None) -> list[str]:
    """:func:`daphne_argv` or :func:`uvicorn_argv` by ``kind`` (one of :data:`SERVERS`).

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind == "uvicorn":
        return uvicorn_argv(port, admin_port)
    if kind != "daphne":
        raise ValueError(f"unknown server {kind!r} (one of {SERVERS})")
    argv = daphne_argv(port)
    if admin_port is not None:
        argv[-1:-1] = ["-e", f"tcp:port={admin_port}:interface=127.0.0.1"]
    return argv


def start_server(
    kind: str, port: int, log: Path, *, admin_port: int | None = None, **env: Any
) -> subprocess.Popen[bytes]:
    """Start ``kind`` (daphne or uvicorn) on the test DB and wait until it listens (on both
    ports with ``admin_port``, which is also passed as ``ADMIN_PORT``)."""
    if admin_port is not None:
        env["ADMIN_PORT"] = admin_port
    proc = subprocess.Popen(
        server_argv(kind, port, admin_port),
        cwd=ROOT,
        env=child_env(**env),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        for p in (port,) if admin_port is None else (port, admin_port):
            wait_for_port(p, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def start_daphne(port: int, log: Path, **env: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        daphne_argv(port),
        cwd=ROOT,
        env=child_env(**env),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
    except BaseException:
        stop(proc)  # a daphne too slow to listen must not outlive the test that started it
        raise
    return proc


def start_worker(log: Path, **env: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_worker"],
        cwd=ROOT,
        env=child_env(TASK_EXECUTOR="worker", **env),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def reap_orphans(pids: list[int], timeout: float = 10) -> list[int]:
    """Wait until every pid in ``pids`` has exited, reaping those re-parented to this process
    (a child subreaper). Returns the pids still alive after ``timeout`` seconds."""
    alive = set(pids)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child: gone, or reaped by someone else
                done = pid if not os.path.exists(f"/proc/{pid}") else 0
            if done:
                alive.discard(pid)
        time.sleep(0.05)
    return sorted(alive)


def zombie_children() -> list[str]:
    """``/proc/<pid>/stat`` heads of this process's children that are zombies (never reaped)."""
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields[0] == "Z" and int(fields[1]) == me:
                found.append(stat[:60])
    return found


def reap_zombie_children(name_prefixes: tuple[str, ...], wait_s: float = 3.0) -> list[int]:
    """Kill and reap this process's children whose command starts with ``name_prefixes``.

    The test process is a child subreaper (the sandbox backend makes it one), so the orphans of
    a program that double-forks (Chromium's crashpad handler) become its children and nobody
    else waits for them. Call it once that program has exited: whatever of it is still running
    is an orphan; it gets ``wait_s`` seconds to exit, then SIGKILL. Returns the reaped pids."""
    me, reaped = os.getpid(), []
    deadline = time.monotonic() + wait_s
    while True:
        pending = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            name = stat[stat.find("(") + 1 : stat.rfind(")")]
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[1]) != me or not name.startswith(name_prefixes):
                continue
            pid = int(entry.name)
            if fields[0] == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                    reaped.append(pid)
            else:
                pending = True
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if not pending or time.monotonic() > deadline + 5:
            return reaped
        time.sleep(0.05)

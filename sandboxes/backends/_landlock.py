"""Host side of the ``landlock`` tier: detection and the command line that starts a sandbox.

The tier for hosts where bubblewrap cannot create namespaces (research note §5.2 tier 3,
"restricted"): ``[sh (join cgroup) →] prlimit → setpriv → python landlock_launch.py CONFIG``,
where :mod:`sandboxes.backends.landlock_launch` confines itself with Landlock and the restricted
seccomp filter and then execs the supervisor. What it allows is decided here:

* read + execute: ``/usr`` and the merged-``/usr`` links, the sandbox's python, the launcher
  and sbxd files, ``readonly_paths`` (toolchains);
* read: ``/proc`` (a process's environment stays unreadable outside the sandbox's own Landlock
  domain) and the same ``/etc`` files the bubblewrap tier binds (``_bwrap.ETC_FILES``);
* read + write: the workspace and a private tmp dir (``TMPDIR``) under the data dir;
* read + write: ``/dev/null``, ``/dev/zero``, ``/dev/full``, ``/dev/random``, ``/dev/urandom``.

Everything else of the host (``/root``, ``/home``, ``/etc/shadow``, the server's checkout and
data dir, other workspaces) cannot be opened; TCP bind/connect is denied by Landlock and every
``AF_INET``/``AF_INET6``/``AF_UNIX``/``AF_NETLINK`` socket by seccomp; signals and abstract
unix sockets are scoped to the sandbox (Landlock ABI ≥ 6). There is no pid namespace: the
supervisor kills trees by session and by its ``SBXD_PROCESS`` mark, and stopping a sandbox kills
its cgroup (or, without one, every process of its dedicated uid).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sandboxes.backends import _cgroup as cgroups
from sandboxes.backends import _seccomp
from sandboxes.backends._bwrap import ETC_FILES, JOIN_SCRIPT, Setup, rlimit_args, spawn_env
from sandboxes.backends._seccomp import filter_fd
from sandboxes.backends.landlock_launch import abi
from sandboxes.base import SandboxSpec

logger = logging.getLogger(__name__)

LAUNCHER_SOURCE = Path(__file__).with_name("landlock_launch.py")
MIN_ABI = 1
DEV_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


def private_tmp(data_dir: Path, sandbox_id: str) -> Path:
    """The sandbox's ``TMPDIR`` on the host (there is no private ``/tmp`` mount here)."""
    return data_dir / "tmp" / hashlib.sha256(sandbox_id.encode()).hexdigest()[:24]


def prepare_tmp(data_dir: Path, sandbox_id: str, uid: int, gid: int, *, own: bool) -> Path:
    """Create (mode 0700, owned by the sandbox uid when ``own``) and return the private tmp."""
    tmp = private_tmp(data_dir, sandbox_id)
    (data_dir / "tmp").mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp.mkdir(mode=0o700, exist_ok=True)
    if own:
        os.chown(tmp, uid, gid, follow_symlinks=False)
    return tmp


def launch_argv(
    setup: Setup,
    spec: SandboxSpec,
    *,
    python: str,
    launcher: Path,
    sbxd: Path,
    tmp: Path,
    seccomp_fd: int | None,
) -> list[str]:
    """The full command line that starts ``sbxd`` in a Landlock sandbox (see the module
    docstring); the cgroup join reads ``AGENT_CGROUP_PROCS`` from the spawn environment."""
    assert setup.prlimit is not None
    cmd = ["/bin/sh", "-c", JOIN_SCRIPT, "sh"] if setup.cgroup else []
    cgroup = setup.cgroup is not None
    rlimits = rlimit_args(spec, nproc=setup.dedicated_uid, cgroup=cgroup, cpu=False)
    cmd += [setup.prlimit, *rlimits, "--"]
    if setup.dedicated_uid:
        assert setup.setpriv is not None
        cmd += [
            setup.setpriv, f"--reuid={setup.uid}", f"--regid={setup.gid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--pdeathsig=KILL", "--",
        ]  # fmt: skip
    rx = ["/usr", *(f"/{n}" for n in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"))]
    rx += [python, os.path.realpath(python), os.fspath(launcher), os.fspath(sbxd)]
    rx += [os.fspath(p) for p in spec.readonly_paths]
    ro = ["/proc", *(f"/etc/{name}" for name in ETC_FILES), *sorted(glob.glob("/etc/python3*"))]
    config: dict[str, Any] = {
        "rx": rx,
        "ro": ro,
        "rw": [os.fspath(spec.workspace), os.fspath(tmp)],
        "dev": list(DEV_FILES),
        "seccomp_fd": seccomp_fd,
        "argv": [python, "-I", "-S", os.fspath(sbxd)],
    }
    return [*cmd, python, "-I", "-S", os.fspath(launcher), json.dumps(config)]


def probe(
    setup: Setup, *, python: str, launcher: Path, workspace: Path, env: dict[str, str]
) -> tuple[bool, str]:
    """Start ``python -c pass`` confined exactly as a sandbox would be (Landlock, the
    restricted seccomp filter when ``setup.seccomp``, the cgroup when ``setup.cgroup`` and
    ``env`` names its ``cgroup.procs``): ``(ok, error)``."""
    if abi() < MIN_ABI:
        return False, "Landlock is not available (kernel without it, or disabled by the LSM list)"
    spec = SandboxSpec(sandbox_id="probe", workspace=workspace)
    seccomp_fd = filter_fd(setup.seccomp) if setup.seccomp else None
    try:
        argv = launch_argv(
            setup, spec, python=python, launcher=launcher, sbxd=launcher, tmp=workspace,
            seccomp_fd=seccomp_fd,
        )  # fmt: skip
        # The probe execs `python -c pass` instead of sbxd: same confinement, nothing to serve.
        config = json.loads(argv[-1])
        config["argv"] = [python, "-I", "-S", "-c", "pass"]
        argv[-1] = json.dumps(config)
        fds = () if seccomp_fd is None else (seccomp_fd,)
        run = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, cwd="/", pass_fds=fds, env=env
        )
    except subprocess.TimeoutExpired:
        return False, "the Landlock probe timed out"
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
    if run.returncode != 0:
        return False, run.stderr.strip()[-300:] or f"exit {run.returncode}"
    return True, ""


def _details(setup: Setup) -> dict[str, Any]:
    """What ``/health`` reports for this tier."""
    version = abi()
    return {
        "landlock_abi": version,
        "pid_namespace": False,
        "network": "none: TCP denied by Landlock"
        + (", " if version >= 4 else " (ABI < 4: by seccomp only), ")
        + "inet/unix/netlink sockets by seccomp",
        "signal_scope": version >= 6,
        "rlimits": True,
        "memory_limit_mb_backstop": "RLIMIT_AS" if setup.cgroup is None else "cgroup",
        "python": sys.version.split()[0],
    }


def reap_orphans(uid: int, timeout_s: float = 2.0) -> None:
    """Reap our zombie children running as ``uid``: a stopped sandbox's processes that were
    re-parented to this server (when it is a child subreaper) and then killed. Only those: a
    blind ``waitpid(-1)`` would steal other subprocesses' statuses."""
    me = os.getpid()
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/status", "rb") as f:
                    fields = dict(line.split(b":", 1) for line in f if b":" in line)
            except OSError:
                continue
            if int(fields.get(b"PPid", b"0")) != me or int(fields[b"Uid"].split()[0]) != uid:
                continue
            if fields.get(b"State", b"").strip().startswith(b"Z"):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(entry.name), os.WNOHANG)
            else:
                waiting = True  # killed, not dead yet
        if not waiting or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def kill_uid(uid: int) -> int:
    """SIGKILL every process whose real uid is ``uid`` (a stopped sandbox's stragglers when
    there is no cgroup); returns how many were signalled."""
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as f:
                line = next((x for x in f if x.startswith(b"Uid:")), b"")
        except OSError:
            continue
        fields = line.split()
        if len(fields) > 1 and int(fields[1]) == uid:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def detect(
    base: Setup,
    details: dict[str, Any],
    *,
    launcher: Path,
    python: str,
    seccomp: bool,
    cgroups_on: bool,
) -> tuple[Setup | None, str]:
    """The ``landlock`` tier's :class:`Setup` when the kernel has Landlock and a probe sandbox
    runs (with the restricted seccomp filter when ``seccomp`` and it can be built, in a cgroup
    when ``cgroups_on`` and joining one works); ``(None, why)`` otherwise. ``details`` gets what
    ``/health`` shows."""
    if base.prlimit is None:
        return None, "landlock: prlimit (util-linux) is not installed"
    setpriv = shutil.which("setpriv")
    if base.dedicated_uid and setpriv is None:
        return None, "landlock: setpriv (util-linux) is not installed"
    setup = Setup(
        "landlock", base.uid, base.gid, base.dedicated_uid, prlimit=base.prlimit, setpriv=setpriv
    )
    program = _seccomp.cached_filter(restricted=True) if seccomp else None
    if program is not None:
        setup = dataclasses.replace(setup, seccomp=program)
    with tempfile.TemporaryDirectory(prefix="sbx-probe-") as tmp:
        if base.dedicated_uid:
            os.chown(tmp, base.uid, base.gid)
        ok, why = probe(
            setup, python=python, launcher=launcher, workspace=Path(tmp), env=spawn_env(None)
        )
        if not ok:
            return None, f"landlock: {why}"
        support = cgroups.detect() if cgroups_on else None
        if support is not None:
            limited = dataclasses.replace(setup, cgroup=support)
            cg = cgroups.ExecCgroup(support, memory_mb=4096, pids=512)
            try:
                ok, why = probe(
                    limited, python=python, launcher=launcher, workspace=Path(tmp),
                    env=spawn_env(cg),
                )  # fmt: skip
            finally:
                cg.kill()
                cg.remove()
            if ok:
                setup = limited
            else:
                logger.warning("cannot run Landlock sandboxes in a cgroup: %s", why)
    details.update(_details(setup))
    details.update(
        seccomp=setup.seccomp is not None,
        cgroup=f"v{setup.cgroup.version}" if setup.cgroup else False,
    )
    return setup, ""

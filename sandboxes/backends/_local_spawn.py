"""How the ``local`` backend starts a sandbox's supervisor in each tier: the command line, its
environment and the descriptors it inherits (:func:`launch_command`); ``_local_lifecycle``
spawns it and tracks it.

* ``bubblewrap``: ``bwrap_argv`` around ``python -I -S /.sbxd.py`` (sbxd bound read-only, the
  sandbox's own ``/etc/passwd``, ``--info-fd`` for the namespace init's pid, ``--seccomp``,
  and with ``allow_hosts`` one end of the egress socket pair, see ``_egress``);
* ``landlock``: ``_landlock.launch_argv`` (no ``allow_hosts``: no network namespace);
* ``unisolated``: sbxd as a plain process under ``prlimit``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from sandboxes.backends import _cgroup as cgroups
from sandboxes.backends import _landlock
from sandboxes.backends._bwrap import (
    SANDBOX_PATH,
    SANDBOX_TMP,
    WORKSPACE,
    Setup,
    bwrap_argv,
    identity_files,
    rlimit_args,
    spawn_env,
)
from sandboxes.backends._procs import ensure_subreaper
from sandboxes.backends._seccomp import filter_fd
from sandboxes.base import SandboxError, SandboxSpec

SBXD_IN_SANDBOX = "/.sbxd.py"  # bound read-only; binding it at its host path would create the
# host's directory names (/work/...) as empty mount points inside the sandbox


@dataclass
class Launch:
    """A sandbox's start: ``cmd`` run in ``cwd`` with ``env``, passing ``fds``; ``info_r``
    (bwrap's ``--info-fd``), ``info_w``/``seccomp_fd`` (closed by the caller after the spawn)
    and ``egress`` (our end, sbxd's end) when the tier uses them."""

    cmd: list[str]
    cwd: str
    env: dict[str, str]
    workspace_in: str
    fds: list[int] = field(default_factory=list)
    info_r: int | None = None
    info_w: int | None = None
    seccomp_fd: int | None = None
    egress: tuple[socket.socket, socket.socket] | None = None


def egress_on(spec: SandboxSpec) -> bool:
    """Does the sandbox get the egress allow-list proxy (``_egress``)?"""
    return bool(spec.allow_hosts) and spec.network == "none"


def base_env(workspace_in: str, *, host_tmp: bool) -> dict[str, str]:
    """The environment every command starts from (the spec's and the call's env go on top)."""
    env = {"PATH": SANDBOX_PATH, "HOME": workspace_in, "LANG": "C.UTF-8"}
    if not host_tmp:
        env["TMPDIR"] = SANDBOX_TMP
    return env


def launch_command(
    setup: Setup,
    spec: SandboxSpec,
    listener_fd: int,
    cgroup: cgroups.ExecCgroup | None,
    *,
    sbxd: Path,
    launcher: Path,
) -> Launch:
    """The :class:`Launch` of sbxd for ``setup.tier``.

    Raises:
        SandboxError: ``allow_hosts`` on a tier without a network namespace.
    """
    python = str(getattr(settings, "SANDBOX_PYTHON", "") or "/usr/bin/python3")
    env = {
        "SBXD_FD": str(listener_fd),
        "SBXD_PIDNS": "0",
        "SBXD_RETAIN_BYTES": str(getattr(settings, "SANDBOX_PROCESS_RETAIN_BYTES", 1 << 20)),
    }
    if spec.idle_timeout_s is not None:
        env["SBXD_IDLE_S"] = str(spec.idle_timeout_s)
    fds = [listener_fd]
    info_r = info_w = seccomp_fd = None
    egress: tuple[socket.socket, socket.socket] | None = None
    bubblewrap = setup.tier == "bubblewrap"
    if bubblewrap:
        ensure_subreaper()
        env["SBXD_PIDNS"] = "1"
        info_r, info_w = os.pipe()
        binds: tuple[tuple[str, str], ...] = ((os.fspath(sbxd), SBXD_IN_SANDBOX),)
        if setup.dedicated_uid:
            binds += identity_files(Path(settings.SANDBOX_DATA_DIR), setup.uid, setup.gid)
        seccomp_fd = filter_fd(setup.seccomp) if setup.seccomp else None
        if egress_on(spec):
            egress = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            env["SBXD_EGRESS_FD"] = str(egress[1].fileno())
            fds.append(egress[1].fileno())
        cmd = bwrap_argv(
            setup, spec, [python, "-I", "-S", SBXD_IN_SANDBOX], "", env, info_w, seccomp_fd,
            per_exec_cpu=False, extra_ro_binds=binds,
        )  # fmt: skip
        fds += [info_w] + ([seccomp_fd] if seccomp_fd is not None else [])
        spawn_environ, cwd, workspace_in = spawn_env(cgroup), "/", WORKSPACE
    elif setup.tier == "landlock":
        if egress_on(spec):
            raise SandboxError(
                "allow_hosts needs the bubblewrap tier (its own network namespace); this "
                "host runs the landlock tier, where sandboxes have no network at all."
            )
        data_dir = Path(settings.SANDBOX_DATA_DIR)
        tmp = _landlock.prepare_tmp(
            data_dir, spec.sandbox_id, setup.uid, setup.gid, own=setup.dedicated_uid
        )
        seccomp_fd = filter_fd(setup.seccomp) if setup.seccomp else None
        cmd = _landlock.launch_argv(
            setup, spec, python=python, sbxd=sbxd, tmp=tmp, seccomp_fd=seccomp_fd,
            launcher=launcher,
        )  # fmt: skip
        fds += [seccomp_fd] if seccomp_fd is not None else []
        workspace_in = os.fspath(spec.workspace)
        spawn_environ, cwd = {**spawn_env(cgroup), **env}, workspace_in
    else:
        cmd = [python, "-I", "-S", os.fspath(sbxd)]
        if setup.prlimit is not None:
            rl = rlimit_args(spec, nproc=False, cpu=False)
            cmd = [setup.prlimit, *rl, "--", *cmd]
        workspace_in = os.fspath(spec.workspace)
        spawn_environ = {**base_env(workspace_in, host_tmp=True), **env}
        cwd = workspace_in
    return Launch(cmd, cwd, spawn_environ, workspace_in, fds, info_r, info_w, seccomp_fd, egress)

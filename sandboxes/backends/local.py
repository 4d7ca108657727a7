"""The ``local`` sandbox backend: one long-lived bubblewrap sandbox per session on this host,
or an explicitly allowed unisolated mode.

Tiers (detected once per backend instance, cached, logged; see research note §5.2):

``bubblewrap`` (preferred)
    A sandbox is ``prlimit`` (rlimits) → ``setpriv`` (only when the server is root: drop to the
    sandbox's own uid, see ``_bwrap.sandbox_uid``, no groups, no_new_privs) → ``bwrap
    --seccomp`` running our supervisor ``sbxd.py`` (``_local_lifecycle``, ``_supervised``);
    every ``exec`` is then a request to that supervisor (a fork inside the sandbox), not a new
    bubblewrap. Inside: own user/pid/net/ipc/uts/cgroup namespaces (``--unshare-all``,
    loopback-only network unless ``spec.network == "host"``; ``allow_hosts`` adds the egress
    proxy of ``_egress``), ``/usr`` and a few ``/etc`` files read-only (``/etc/passwd`` and
    ``/etc/group`` are the sandbox's own), a sized tmpfs ``/tmp``, the workspace read-write at
    ``/workspace`` (cwd and ``HOME``), nothing of ``/root``, ``/home``, ``/var``, ``/work``.
    When root, the workspace is chowned to the sandbox uid (the whole tree on the first exec
    per workspace, never following symlinks; later host writes through ``sandboxes.paths``
    inherit the owner), because bwrap runs *as* that uid (research note: bwrap started as root
    maps the sandbox to host uid 0). Consequently bwrap must be able to traverse to every bound
    path as that uid: the workspace's parent and ``readonly_paths`` are checked with
    ``setpriv … test -e`` (cached), and ``sandboxes.local.default_data_dir`` picks a data dir
    that is reachable (a checkout under ``/root``, mode 0700, is not).

``unisolated``
    Only when ``SANDBOX_ALLOW_UNISOLATED`` is true and bubblewrap is not usable (or
    ``SANDBOX_FORCE_TIER="unisolated"``, which still needs the allow setting): the supervisor
    as a plain process in the workspace, rlimits via ``prlimit`` (no NPROC). No isolation at
    all: it runs with the server's uid (root, if the server is root) and sees the host network
    and files. Logged at WARNING.

Otherwise ``capabilities().available`` is false and ``exec`` raises :class:`SandboxUnavailable`.

Settings (read with ``getattr`` so this works before the project settings define them):
``SANDBOX_UID`` (65534, the probe's uid and the shared uid when ``SANDBOX_UID_COUNT`` is 0),
``SANDBOX_UID_BASE``/``SANDBOX_UID_COUNT``, ``SANDBOX_ALLOW_UNISOLATED`` (False),
``SANDBOX_FORCE_TIER`` (None | "bubblewrap" | "unisolated"), ``SANDBOX_BWRAP_PATH`` ("bwrap").

Terminate: the supervisor kills a command's whole tree (its session, and every process marked
with its ``SBXD_PROCESS`` id, so ``setsid()`` grandchildren too); stopping a sandbox kills its
pid namespace. Exit codes: ``-N`` for a command killed by signal N.

Zombies: the capability probe's bwrap is our child; bwrap can leave its namespace init behind,
so the server becomes a child subreaper and reaps those inits by pid or pidfd (never a blind
``waitpid(-1)``); see ``_procs``. In Docker, PID 1 is ``tini -s``.
Seccomp: a deny list (``_seccomp.DENIED_SYSCALLS``: ptrace, mount, unshare, bpf, io_uring,
keyrings, raw/vsock sockets, ...) built once with libseccomp and loaded by ``bwrap --seccomp``;
``SANDBOX_SECCOMP=0`` turns it off. When libseccomp is missing the tier runs without it and
``capabilities().details`` says why.
Cgroups (``_cgroup``): when a hierarchy is writable, each sandbox gets its own cgroup with
``limits.memory_mb`` (no swap) and ``limits.pids``, so an OOM kill is reported as
``limit="memory"``; ``SANDBOX_CGROUPS=0`` turns it off. Otherwise rlimits alone bound it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings

from sandboxes import paths
from sandboxes.backends import _cgroup as cgroups
from sandboxes.backends import _egress, _landlock
from sandboxes.backends._bwrap import (
    WORKSPACE,
    Setup,
    bwrap_argv,
    chown_tree,
    parse_init_pid,
    sandbox_uid,
    spawn_env,
)
from sandboxes.backends._local_lifecycle import SupervisedSandboxes
from sandboxes.backends._procs import (
    ensure_subreaper,
    reap_adopted,
)
from sandboxes.backends._seccomp import filter_fd, with_seccomp
from sandboxes.base import (
    Capabilities,
    Execution,
    ProcessInfo,
    SandboxBackend,
    SandboxError,
    SandboxInfo,
    SandboxSpec,
    SandboxUnavailable,
    checked_request,
)
from sandboxes.registry import register_backend

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
_NOT_BOUND = ("/", "/proc", "/dev", WORKSPACE)  # readonly_paths may not shadow these


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


@register_backend("local")
class LocalBackend(SupervisedSandboxes, SandboxBackend):
    """Per-exec bubblewrap sandboxes on this host (see the module docstring)."""

    def __init__(self) -> None:
        self._setup: Setup | None = None
        self._caps: Capabilities | None = None
        self._lock = threading.Lock()
        self._owned: set[str] = set()  # workspaces already chowned once by this instance

    # ---------------------------------------------------------------- detection

    def capabilities(self) -> Capabilities:
        """Detect the tier once (runs a probe sandbox, ~10-20 ms) and cache it."""
        with self._lock:
            if self._caps is None:
                self._setup, self._caps = self._detect()
            return self._caps

    def _detect(self) -> tuple[Setup, Capabilities]:
        force = _setting("SANDBOX_FORCE_TIER", None)
        allow = bool(_setting("SANDBOX_ALLOW_UNISOLATED", False))
        root = os.geteuid() == 0
        uid = int(_setting("SANDBOX_UID", 65534)) if root else os.geteuid()
        gid = uid if root else os.getegid()
        base = Setup("none", uid, gid, root, prlimit=shutil.which("prlimit"))
        details: dict[str, Any] = {"uid": uid, "dedicated_uid": root, "seccomp": False}
        reason = ""
        setup: Setup | None = None
        if force not in (None, "", "bubblewrap", "landlock", "unisolated"):
            reason = f"unknown SANDBOX_FORCE_TIER {force!r}"  # no fallback for a typo
        else:
            if force in (None, "", "bubblewrap"):
                setup, reason = self._probe_bwrap(base, details)
            if setup is None and force in (None, "", "landlock"):
                setup, why = self._probe_landlock(base, details)
                reason = "; ".join(r for r in (reason, why) if r)
            if setup is None and force in (None, "", "unisolated"):
                if allow:
                    setup = Setup("unisolated", uid, gid, False, prlimit=base.prlimit)
                elif force == "unisolated":
                    reason = "SANDBOX_FORCE_TIER=unisolated but SANDBOX_ALLOW_UNISOLATED is false"
        if setup is None:
            caps = Capabilities(
                "local", "none", False, False, reason=reason or "not available", details=details
            )
            logger.warning(
                "SANDBOX UNAVAILABLE: %s. Install bubblewrap (scripts/install-system-deps.sh) "
                "or set SANDBOX_ALLOW_UNISOLATED=1 (no isolation).",
                caps.reason,
            )
            return base, caps
        if setup.tier == "unisolated":
            details.update(network="host", pid_namespace=False, rlimits=bool(setup.prlimit))
            caps = Capabilities("local", "unisolated", False, True, reason=reason, details=details)
            logger.warning(
                "SANDBOX IS NOT ISOLATED: commands run as a plain subprocess with the server's "
                "privileges (SANDBOX_ALLOW_UNISOLATED). Reason: %s",
                reason or "forced by SANDBOX_FORCE_TIER",
            )
            return setup, caps
        caps = Capabilities("local", setup.tier, True, True, reason=reason, details=details)
        log = logger.info if setup.tier == "bubblewrap" else logger.warning
        log("sandbox tier: %s (%s)%s", setup.tier, details, f"; {reason}" if reason else "")
        return setup, caps

    def _probe_landlock(self, base: Setup, details: dict[str, Any]) -> tuple[Setup | None, str]:
        return _landlock.detect(
            base, details, launcher=self._support_file(_landlock.LAUNCHER_SOURCE),
            python=str(_setting("SANDBOX_PYTHON", "") or "/usr/bin/python3"),
            seccomp=bool(_setting("SANDBOX_SECCOMP", True)),
            cgroups_on=bool(_setting("SANDBOX_CGROUPS", True)),
        )  # fmt: skip

    def _probe_bwrap(self, base: Setup, details: dict[str, Any]) -> tuple[Setup | None, str]:
        bwrap = shutil.which(str(_setting("SANDBOX_BWRAP_PATH", "bwrap")))
        if bwrap is None:
            return None, "bubblewrap (bwrap) is not installed"
        if base.prlimit is None:
            return None, "prlimit (util-linux) is not installed"
        setpriv = shutil.which("setpriv")
        if base.dedicated_uid:
            if setpriv is None:
                return None, "setpriv (util-linux) is not installed"
            if base.uid == 0:
                return None, "SANDBOX_UID must not be 0"
        version = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
        details.update(
            bwrap=bwrap,
            bwrap_version=version.stdout.strip().rpartition(" ")[2],
            pid_namespace=True,
            network="none (own network namespace, loopback only) unless network='host'",
            egress_allow_list="HTTP(S) proxy for allow_hosts (HTTP_PROXY in the sandbox)",
            rlimits=True,
            cgroup=False,
        )
        errors: list[str] = []
        with tempfile.TemporaryDirectory(prefix="sbx-probe-") as tmp:
            probe = SandboxSpec(sandbox_id="probe", workspace=Path(tmp))
            if base.dedicated_uid:
                os.chown(tmp, base.uid, base.gid)
            # Podman-like containers cannot mount a new procfs: fall back to binding the host's.
            for proc_args in (("--proc", "/proc"), ("--ro-bind", "/proc", "/proc")):
                setup = Setup(
                    "bubblewrap", base.uid, base.gid, base.dedicated_uid,
                    bwrap=bwrap, prlimit=base.prlimit, setpriv=setpriv, proc_args=proc_args,
                )  # fmt: skip
                try:
                    run = self._run_probe(setup, probe)
                except subprocess.TimeoutExpired:
                    errors.append("probe timed out")
                    continue
                if run.returncode == 0:
                    details["proc"] = proc_args[0].lstrip("-")
                    setup = with_seccomp(
                        setup, lambda s: self._run_probe(s, probe), details,
                        enabled=bool(_setting("SANDBOX_SECCOMP", True)),
                    )  # fmt: skip
                    setup = self._with_cgroup(setup, probe, details)
                    self._check_data_dir(setup, details)
                    return setup, ""
                errors.append(run.stderr.strip()[-300:] or f"exit {run.returncode}")
        logger.warning("bubblewrap probe failed: %s", " | ".join(errors))
        return None, f"bubblewrap does not work here: {errors[0]}"

    def _with_cgroup(self, setup: Setup, probe: SandboxSpec, details: dict[str, Any]) -> Setup:
        """``setup`` with per-execution cgroups when a hierarchy is writable and joining works."""
        support = cgroups.detect() if _setting("SANDBOX_CGROUPS", True) else None
        if support is None:
            details["cgroup"] = False
            return setup
        cgroups.sweep(support)
        limited = dataclasses.replace(setup, cgroup=support)
        cg = cgroups.ExecCgroup(support, memory_mb=probe.limits.memory_mb, pids=probe.limits.pids)
        try:
            run = self._run_probe(limited, probe, cgroup=cg)
        except subprocess.TimeoutExpired:
            run = subprocess.CompletedProcess([], 1, "", "probe timed out")
        finally:
            cg.kill()
            cg.remove()
        if run.returncode != 0:
            logger.warning("cannot run sandboxes in a cgroup: %s", run.stderr.strip()[-300:])
            details["cgroup"] = False
            return setup
        details["cgroup"] = f"v{support.version}"
        return limited

    def _run_probe(
        self, setup: Setup, probe: SandboxSpec, *, cgroup: cgroups.ExecCgroup | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``true`` in a sandbox, then reap the init bwrap orphans (see ``_procs``)."""
        ensure_subreaper()
        read_fd, write_fd = os.pipe()
        seccomp_fd = filter_fd(setup.seccomp) if setup.seccomp else None
        try:
            argv = bwrap_argv(setup, probe, ["true"], "", {}, write_fd, seccomp_fd)
            pass_fds = (write_fd,) if seccomp_fd is None else (write_fd, seccomp_fd)
            with os.fdopen(read_fd, "rb") as info:
                proc = subprocess.Popen(
                    argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    cwd="/", pass_fds=pass_fds, env=spawn_env(cgroup),
                )  # fmt: skip
                os.close(write_fd)
                write_fd = -1
                raw = info.read()  # bwrap closes it right after writing
            try:
                out, err = proc.communicate(timeout=PROBE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
        finally:
            if write_fd != -1:
                os.close(write_fd)
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        init_pid = parse_init_pid(raw)
        if init_pid is not None:
            reap_adopted(init_pid, timeout_s=1.0)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def _check_data_dir(self, setup: Setup, details: dict[str, Any]) -> None:
        data_dir = _setting("SANDBOX_DATA_DIR", None)
        if data_dir is None:
            return
        existing = Path(os.path.abspath(data_dir))
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent  # it is created later; its ancestors must be reachable
        ok = self._reachable(setup, existing)
        details["data_dir_reachable"] = ok
        if not ok:
            logger.warning(
                "SANDBOX_DATA_DIR %s is not traversable by sandbox uid %s: every exec will fail. "
                "Use sandboxes.local.default_data_dir() or a directory under /var/lib.",
                data_dir,
                setup.uid,
            )

    def _reachable(self, setup: Setup, path: Path) -> bool:
        """Can the sandbox uid reach ``path`` (search permission on every ancestor)?

        Asked of the kernel by running ``test -e`` as that uid (ACLs included); cached per path.
        """
        if not setup.dedicated_uid:
            return True
        key = os.fspath(path)
        if key not in setup.reachable:
            if len(setup.reachable) > 1024:  # bounded: keys are a few data dirs in practice
                setup.reachable.clear()
            assert setup.setpriv is not None
            run = subprocess.run(
                [setup.setpriv, f"--reuid={setup.uid}", f"--regid={setup.gid}",
                 "--clear-groups", "--", "test", "-e", key],
                capture_output=True, timeout=PROBE_TIMEOUT_S, cwd="/",
            )  # fmt: skip
            setup.reachable[key] = run.returncode == 0
        return setup.reachable[key]

    # ---------------------------------------------------------------- commands

    def _check_readonly_paths(self, setup: Setup, spec: SandboxSpec) -> None:
        for ro in spec.readonly_paths:
            path = os.path.normpath(os.fspath(ro))
            if not os.path.isabs(path) or any(
                path == bad or (bad != "/" and path.startswith(bad + "/")) for bad in _NOT_BOUND
            ):
                raise SandboxError("A read-only path is not allowed.", details={"path": path})
            if not os.path.exists(path) or not self._reachable(setup, Path(path)):
                logger.error(
                    "readonly path %s is missing or not reachable by uid %s", path, setup.uid
                )
                raise SandboxError("A read-only path is missing or not reachable by the sandbox.")

    def _own_workspace(self, setup: Setup, workspace: Path) -> None:
        """Make the workspace the sandbox uid's (root only).

        The whole tree is walked the first time this backend instance sees a workspace (or when
        its root changed owner, e.g. recreated): the walk costs about 6 µs per entry. Later host
        writes go through :mod:`sandboxes.paths`, which gives new entries the owner of their
        parent directory (:func:`sandboxes.paths.adopt_owner`), so they need no new walk. Host
        code that writes into a workspace by other means must call ``paths.adopt_owner`` or its
        files stay root-owned (readable, not writable, by the sandbox).
        """
        key = os.fspath(workspace)
        st = os.stat(workspace, follow_symlinks=False)
        if key in self._owned and (st.st_uid, st.st_gid) == (setup.uid, setup.gid):
            return
        chown_tree(workspace, setup.uid, setup.gid)
        with self._lock:
            if len(self._owned) > 4096:  # bounded memory; a re-walk is only slower
                self._owned.clear()
            self._owned.add(key)

    def _prepare_workspace(self, setup: Setup, spec: SandboxSpec, rel_cwd: str) -> None:
        """Create/own the workspace and validate cwd; blocking, run in a worker thread."""
        workspace = spec.workspace
        workspace.mkdir(mode=0o755, parents=True, exist_ok=True)
        if rel_cwd and paths.stat(workspace, rel_cwd).type != "directory":
            raise paths.WorkspacePathError("cwd is not a directory.")
        if setup.tier not in ("bubblewrap", "landlock"):
            return
        if setup.dedicated_uid:
            if not self._reachable(setup, workspace.parent):
                logger.error(
                    "workspace parent %s is not traversable by sandbox uid %s; set "
                    "SANDBOX_DATA_DIR = sandboxes.local.default_data_dir(BASE_DIR)",
                    workspace.parent,
                    setup.uid,
                )
                raise SandboxError("The workspace is not reachable by the sandbox user.")
            self._own_workspace(setup, workspace)
        self._check_readonly_paths(setup, spec)

    # ---------------------------------------------------------------- exec

    async def exec(
        self,
        spec: SandboxSpec,
        argv: list[str],
        *,
        cwd: str = "",
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> Execution:
        """Start ``argv`` in the sandbox (see :meth:`SandboxBackend.exec`).

        Raises:
            SandboxUnavailable: no tier is available.
            SandboxError: the command could not be started (empty argv, bad readonly path,
                unreachable workspace, bwrap/prlimit failure to start).
            WorkspacePathError / WorkspaceFileNotFound: ``cwd`` is invalid or not a directory.
            InvalidInput: an environment variable name/value is invalid.
        """
        setup, spec, rel_cwd, merged = await self._checked(spec, argv, cwd, env)
        execution = await self._exec_supervised(setup, spec, argv, rel_cwd, merged, stdin)
        assert isinstance(execution, Execution)
        return execution

    async def _checked(
        self, spec: SandboxSpec, argv: list[str] | None, cwd: str, env: Mapping[str, str] | None
    ) -> tuple[Setup, SandboxSpec, str, dict[str, str]]:
        """Validate a request; returns ``(setup, spec with absolute workspace, cwd, env)``."""
        caps = self._caps if self._caps is not None else await asyncio.to_thread(self.capabilities)
        setup = self._setup
        if not caps.available or setup is None:
            raise SandboxUnavailable(
                "No sandbox is available: install bubblewrap (scripts/install-system-deps.sh) "
                "or set SANDBOX_ALLOW_UNISOLATED=1 to run commands without isolation.",
                details={"reason": caps.reason},
            )
        spec, rel_cwd, merged = checked_request(spec, argv, cwd, env)
        setup = self._for_sandbox(setup, spec.sandbox_id)
        _egress.parse_rules(spec.allow_hosts)  # InvalidInput before anything starts
        await asyncio.to_thread(self._prepare_workspace, setup, spec, rel_cwd)
        return setup, spec, rel_cwd, merged

    @staticmethod
    def _for_sandbox(setup: Setup, sandbox_id: str) -> Setup:
        """The setup with this sandbox's own uid/gid (root servers, ``SANDBOX_UID_COUNT`` > 0)."""
        count = int(_setting("SANDBOX_UID_COUNT", 0))
        if not setup.dedicated_uid or count <= 0 or setup.tier not in ("bubblewrap", "landlock"):
            return setup
        uid = sandbox_uid(sandbox_id, base=int(_setting("SANDBOX_UID_BASE", 200000)), count=count)
        return dataclasses.replace(setup, uid=uid, gid=uid)

    async def create(self, spec: SandboxSpec) -> SandboxInfo:
        """Start the sandbox now (see :meth:`SandboxBackend.create`)."""
        setup, spec, _, _ = await self._checked(spec, None, "", None)
        await self._ensure(setup, spec)
        info = await self.info(spec.sandbox_id)
        if info is None:
            raise SandboxError("The sandbox stopped right after it started.")
        return info

    async def start_process(
        self,
        spec: SandboxSpec,
        argv: list[str],
        *,
        cwd: str = "",
        env: Mapping[str, str] | None = None,
    ) -> ProcessInfo:
        """Start a background process (see :meth:`SandboxBackend.start_process`)."""
        setup, spec, rel_cwd, merged = await self._checked(spec, argv, cwd, env)
        process_id = await self._exec_supervised(
            setup, spec, argv, rel_cwd, merged, None, background=True
        )
        assert isinstance(process_id, str)
        return await self._started(spec.sandbox_id, str(process_id), argv)

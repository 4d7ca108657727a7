"""Building blocks of the ``local`` backend's bubblewrap tier: the command line and helpers.

Kept apart from ``local.py`` (detection, exec) so each module stays small. See the docstring of
``sandboxes.backends.local`` for the design; numbers are bytes unless a name says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import json
import logging
import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sandboxes import paths
from sandboxes.backends._cgroup import JOIN_SCRIPT, CgroupSupport, ExecCgroup
from sandboxes.base import SandboxSpec

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
WORKSPACE = "/workspace"
SANDBOX_TMP = "/tmp"  # noqa: S108 - the sandbox's own private tmpfs, not the host's /tmp
INFO_TIMEOUT_S = 10.0  # seconds to wait for bwrap to report the namespace init's pid
# /etc entries the sandbox may read (bound read-only when present). alternatives: Debian's
# /usr/bin/awk etc. are symlinks through it; python3.*: sitecustomize of Debian's python.
ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "hosts",
    "host.conf", "gai.conf", "resolv.conf", "services", "protocols", "ssl", "ca-certificates",
    "alternatives", "localtime", "timezone", "mime.types",
)  # fmt: skip


@dataclass(frozen=True)
class Setup:
    """What detection found; drives command construction."""

    tier: str  # "bubblewrap" | "unisolated" | "none"
    uid: int
    gid: int
    dedicated_uid: bool  # root dropped to SANDBOX_UID (else: the server's own uid)
    bwrap: str | None = None
    prlimit: str | None = None
    setpriv: str | None = None
    proc_args: tuple[str, ...] = ("--proc", "/proc")
    seccomp: bytes | None = field(default=None, compare=False, repr=False)  # raw BPF program
    cgroup: CgroupSupport | None = field(default=None, compare=False)
    reachable: dict[str, bool] = field(default_factory=dict, compare=False)


def hard_limit(res: int) -> int:
    """Our own hard limit for resource ``res`` (a large number when unlimited)."""
    hard = resource.getrlimit(res)[1]
    return hard if hard != resource.RLIM_INFINITY else 1 << 62  # "unlimited" for prlimit


def sandbox_uid(sandbox_id: str, *, base: int, count: int) -> int:
    """The uid (and gid) a root server runs sandbox ``sandbox_id`` as: ``base`` plus a hash of
    the id modulo ``count``, so it is stable across restarts (the workspace keeps its owner)
    and different sandboxes almost always differ (research note §5.2 "uids": RLIMIT_NPROC,
    DAC and ``kill`` then act per sandbox; a shared uid would let one sandbox's processes use
    up another's process limit)."""
    digest = hashlib.sha256(sandbox_id.encode()).digest()
    return base + int.from_bytes(digest[:8], "big") % count


def identity_files(data_dir: Path, uid: int, gid: int) -> tuple[tuple[str, str], ...]:
    """``/etc/passwd`` and ``/etc/group`` for a sandbox running as ``uid``: root, nobody and
    ``sandbox`` (home ``/workspace``), so ``whoami``, ``id`` and tools that look the user up
    work, and the host's accounts stay hidden. Written once per uid under
    ``data_dir/etc`` (0755/0644: bwrap reads them as the sandbox uid). Returns the
    ``(host path, sandbox path)`` pairs to bind read-only."""
    folder = data_dir / "etc"
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    files = {
        "passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            f"sandbox:x:{uid}:{gid}:sandbox:{WORKSPACE}:/bin/sh\n"
        ),
        "group": f"root:x:0:\nnogroup:x:65534:\nsandbox:x:{gid}:\n",
    }
    out = []
    for name, text in files.items():
        host = folder / f"{name}-{uid}"
        if not host.exists():
            tmp = folder / f".{name}-{uid}.{os.getpid()}"
            tmp.write_text(text)
            tmp.chmod(0o644)
            os.replace(tmp, host)  # atomic: a concurrent reader never sees half a file
        out.append((os.fspath(host), f"/etc/{name}"))
    return tuple(out)


def rlimit_args(
    spec: SandboxSpec, *, nproc: bool, cgroup: bool = False, cpu: bool = True
) -> list[str]:
    """``prlimit`` options (soft = hard) clamped to our own hard limits.

    ``cpu=False`` leaves RLIMIT_CPU alone: for a long-lived supervisor, whose own CPU time
    accumulates over the sandbox's life, the limit is applied per command instead.

    We may lack CAP_SYS_RESOURCE (research note §1), in which case raising a hard limit fails.
    """
    lim = spec.limits
    # With a cgroup bounding real memory, RLIMIT_AS is only a backstop: it counts reserved
    # address space, which runtimes such as the JVM, Go and Node take far more of than they use.
    address_space = lim.memory_mb * (4 if cgroup else 1)
    wanted = [
        ("--as", resource.RLIMIT_AS, address_space * MIB),
        ("--fsize", resource.RLIMIT_FSIZE, lim.file_size_mb * MIB),
        ("--nofile", resource.RLIMIT_NOFILE, lim.open_files),
        ("--core", resource.RLIMIT_CORE, 0),
    ]
    if nproc:  # per real uid system-wide: only meaningful for a dedicated sandbox uid
        wanted.append(("--nproc", resource.RLIMIT_NPROC, lim.pids))
    args = [f"{opt}={min(value, hard_limit(res))}" for opt, res, value in wanted]
    if not cpu:
        return args
    # CPU: the soft limit sends SIGXCPU (reported as ExecEvent.limit "cpu"); the hard limit, a
    # second later, SIGKILLs a process that ignores it. Equal limits would SIGKILL at once.
    cpu_hard = min(lim.cpu_s + 1, hard_limit(resource.RLIMIT_CPU))
    args.append(f"--cpu={min(lim.cpu_s, cpu_hard)}:{cpu_hard}")
    return args


def spawn_env(cgroup: ExecCgroup | None) -> dict[str, str]:
    """Environment of the spawn line (bwrap clears it for the sandbox itself).

    ``AGENT_RUNTIME_DATA_DIR`` marks the outer processes with the server's data dir, so a
    leftover check (and an operator's ``ps e``) can tell which deployment started them."""
    env = {"PATH": SANDBOX_PATH, "AGENT_RUNTIME_DATA_DIR": str(_data_dir())}
    if cgroup is not None:
        env["AGENT_CGROUP_PROCS"] = cgroup.procs_files
    return env


def _data_dir() -> object:
    from django.conf import settings

    return getattr(settings, "SANDBOX_DATA_DIR", "")


def root_links() -> list[str]:
    """Recreate the host's /bin, /lib… layout: symlinks on merged-/usr hosts, binds otherwise."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{name}"
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args += ["--ro-bind", host, host]
    return args


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give the sandbox uid the workspace: ``lchown`` everything below ``root``.

    :func:`sandboxes.paths.iter_tree` opens every directory relative to its parent's fd with
    ``O_NOFOLLOW``, and ``fchownat(AT_SYMLINK_NOFOLLOW)`` never follows a final symlink, so a
    link planted (or swapped in) by sandboxed code cannot redirect the chown to a host file.
    """
    st = os.stat(root, follow_symlinks=False)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(root, uid, gid, follow_symlinks=False)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for parent_fd, name, _rel, st in paths.iter_tree(fd):
            if (st.st_uid, st.st_gid) != (uid, gid):
                with contextlib.suppress(FileNotFoundError):  # removed by a running command
                    os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
    finally:
        os.close(fd)


def bwrap_argv(
    setup: Setup,
    spec: SandboxSpec,
    argv: list[str],
    rel_cwd: str,
    env: Mapping[str, str],
    info_fd: int | None,
    seccomp_fd: int | None = None,
    *,
    per_exec_cpu: bool = True,
    extra_ro_binds: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """The full ``[sh (join cgroup) →] prlimit → [setpriv →] bwrap → argv`` command line.
    ``seccomp_fd`` is read by bwrap for the BPF filter it installs just before exec (see
    ``_seccomp``); the cgroup join reads ``AGENT_CGROUP_PROCS`` from the spawn environment."""
    assert setup.bwrap is not None
    assert setup.prlimit is not None
    cmd = ["/bin/sh", "-c", JOIN_SCRIPT, "sh"] if setup.cgroup else []
    rlimits = rlimit_args(
        spec, nproc=setup.dedicated_uid, cgroup=setup.cgroup is not None, cpu=per_exec_cpu
    )
    cmd += [setup.prlimit, *rlimits, "--"]
    if setup.dedicated_uid:
        assert setup.setpriv is not None
        cmd += [
            setup.setpriv, f"--reuid={setup.uid}", f"--regid={setup.gid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--",
        ]  # fmt: skip
    cmd += [setup.bwrap, "--ro-bind", "/usr", "/usr", *root_links()]
    for name in ETC_FILES:
        cmd += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in sorted(glob.glob("/etc/python3*")):
        cmd += ["--ro-bind-try", path, path]
    cmd += [*setup.proc_args, "--dev", "/dev"]
    cmd += ["--size", str(spec.limits.tmp_mb * MIB), "--tmpfs", SANDBOX_TMP]
    cmd += ["--bind", os.fspath(spec.workspace), WORKSPACE]
    for ro in spec.readonly_paths:
        cmd += ["--ro-bind", os.fspath(ro), os.fspath(ro)]
    for source, dest in extra_ro_binds:
        cmd += ["--ro-bind", source, dest]
    # The root is bwrap's private tmpfs; make it read-only so nothing but the workspace and
    # /tmp is writable.
    cmd += ["--remount-ro", "/"]
    cmd += [
        "--chdir", f"{WORKSPACE}/{rel_cwd}" if rel_cwd else WORKSPACE,
        "--unshare-all", "--unshare-user", "--disable-userns",
        "--hostname", "sandbox", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--clearenv", "--setenv", "PATH", SANDBOX_PATH, "--setenv", "HOME", WORKSPACE,
        "--setenv", "TMPDIR", SANDBOX_TMP, "--setenv", "LANG", "C.UTF-8",
    ]  # fmt: skip
    if spec.network == "host":
        cmd.append("--share-net")
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    if info_fd is not None:
        cmd += ["--info-fd", str(info_fd)]
    if seccomp_fd is not None:
        cmd += ["--seccomp", str(seccomp_fd)]
    return [*cmd, "--", *argv]


async def read_init_pid(fd: int) -> int | None:
    """Read bwrap's ``--info-fd`` JSON (bwrap closes it once written) and return ``child-pid``.

    That pid is the host pid of the sandbox's pid-namespace init. ``None`` if bwrap failed
    before forking (it then exits on its own with an error on stderr).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    chunks: list[bytes] = []
    os.set_blocking(fd, False)

    def on_readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            chunks.append(data)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await asyncio.wait_for(done, INFO_TIMEOUT_S)
    except TimeoutError:
        logger.warning("bwrap did not report its child pid within %s s", INFO_TIMEOUT_S)
    finally:
        loop.remove_reader(fd)
    return parse_init_pid(b"".join(chunks))


def parse_init_pid(raw: bytes) -> int | None:
    try:
        pid = json.loads(raw or b"{}").get("child-pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None

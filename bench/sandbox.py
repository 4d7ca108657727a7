"""Sandbox cold start and exec latency per local tier, against a plain subprocess measured in
the same run.

For each configuration: cold create (stop the sandbox, then ``create`` + the first ``true``:
bubblewrap, cgroup, the supervisor's start), ``--runs // 5`` times; then ``--runs`` executions
of ``true`` and of ``python3 -c pass`` through ``LocalBackend.exec`` in the running sandbox
(request, fork in the sandbox, stream, exit event), in ms, p50/p95, after 3 warm-up runs. The
configurations differ in what the sandbox has: the full bubblewrap tier (seccomp filter +
cgroup), without the cgroup, without seccomp, the Landlock fallback tier, and (when podman is
installed) the docker backend on a private Podman service; the baseline is a plain ``asyncio``
subprocess.

Usage: ``.venv/bin/python bench/sandbox.py [--runs 50] [--record]`` (as root, for the cgroup).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runtime_project.settings")

import django  # noqa: E402

django.setup()

from django.test import override_settings  # noqa: E402

from bench.run import pct, prepend_results  # noqa: E402
from sandboxes.backends._bwrap import SANDBOX_PATH  # noqa: E402
from sandboxes.backends.local import LocalBackend  # noqa: E402
from sandboxes.base import SandboxBackend, SandboxSpec  # noqa: E402
from tests.sandboxes.helpers import collect  # noqa: E402

COMMANDS = {"true": ["true"], "python3 -c pass": ["python3", "-c", "pass"]}
CONFIGS = {
    "bubblewrap + seccomp + cgroup (default)": {},
    "bubblewrap + seccomp": {"SANDBOX_CGROUPS": False},
    "bubblewrap": {"SANDBOX_CGROUPS": False, "SANDBOX_SECCOMP": False},
    "landlock + seccomp + cgroup (fallback tier)": {"SANDBOX_FORCE_TIER": "landlock"},
}
DOCKER = "docker backend on Podman (container per sandbox)"


async def time_backend(backend: SandboxBackend, spec: SandboxSpec, argv: list[str], runs: int):
    loop = asyncio.get_running_loop()
    out = []
    for i in range(runs + 3):
        started = loop.time()
        _, _, exit_event = await collect(await backend.exec(spec, argv))
        assert exit_event.exit_code == 0, exit_event
        if i >= 3:
            out.append((loop.time() - started) * 1000)
    return out


async def time_cold(backend: SandboxBackend, spec: SandboxSpec, runs: int) -> list[float]:
    loop = asyncio.get_running_loop()
    out = []
    for _ in range(max(3, runs // 5)):
        await backend.stop(spec.sandbox_id)
        started = loop.time()
        await backend.create(spec)
        _, _, exit_event = await collect(await backend.exec(spec, ["true"]))
        assert exit_event.exit_code == 0, exit_event
        out.append((loop.time() - started) * 1000)
    return out


async def time_plain(argv: list[str], runs: int) -> list[float]:
    # The same binaries the sandbox runs (its PATH), not whatever shims the caller's PATH has.
    argv = [shutil.which(argv[0], path=SANDBOX_PATH) or argv[0], *argv[1:]]
    loop = asyncio.get_running_loop()
    out = []
    for i in range(runs + 3):
        started = loop.time()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        await proc.communicate()
        if i >= 3:
            out.append((loop.time() - started) * 1000)
    return out


async def main(runs: int) -> tuple[list[str], str]:
    workspace = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    if os.geteuid() == 0:
        os.chown(workspace, 65534, 65534)
    spec = SandboxSpec(sandbox_id="bench", workspace=workspace)
    rows = []
    baseline = {name: await time_plain(argv, runs) for name, argv in COMMANDS.items()}
    rows.append(("plain subprocess (baseline)", baseline, "-"))
    cold: dict[str, list[float]] = {}
    for label, overrides in CONFIGS.items():
        with override_settings(**overrides):
            backend = LocalBackend()
            details = backend.capabilities().details
            cold[label] = await time_cold(backend, spec, runs)
            got = {n: await time_backend(backend, spec, a, runs) for n, a in COMMANDS.items()}
            await backend.stop(spec.sandbox_id)
        rows.append((label, got, f"seccomp={details['seccomp']}, cgroup={details['cgroup']}"))
    if shutil.which("podman"):
        from sandboxes.backends.docker import DockerBackend
        from tests.sandboxes.conftest import docker_settings
        from tests.sandboxes.podman import podman_service

        with podman_service() as url, docker_settings(url):
            docker_backend = DockerBackend()
            info = docker_backend.capabilities().details
            cold[DOCKER] = await time_cold(docker_backend, spec, runs)
            got = {
                n: await time_backend(docker_backend, spec, a, runs) for n, a in COMMANDS.items()
            }
            await docker_backend.stop(spec.sandbox_id)
        rows.append((DOCKER, got, f"{info['engine']} {info['version']}, seccomp={info['seccomp']}"))
    header = [
        "| configuration | cold create + first `true` p50 / p95 ms | `true` p50 / p95 ms | ratio "
        "| `python3 -c pass` p50 / p95 ms | ratio | detected |",
        "|---|---|---|---|---|---|---|",
    ]
    lines = []
    for label, got, detected in rows:
        c = cold.get(label)
        cells = [f"{pct(c, 0.5):.1f} / {pct(c, 0.95):.1f}" if c else "-"]
        for name in COMMANDS:
            values = got[name]
            ratio = pct(values, 0.5) / pct(baseline[name], 0.5)
            cells += [f"{pct(values, 0.5):.1f} / {pct(values, 0.95):.1f}", f"{ratio:.1f}x"]
        lines.append(f"| {label} | {' | '.join(cells)} | {detected} |")
    return header + lines, workspace.as_posix()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()
    table, _ = asyncio.run(main(args.runs))
    text = "\n".join(
        [
            f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: sandbox cold start and exec latency",
            "",
            f"Command: `.venv/bin/python bench/sandbox.py --runs {args.runs}` ({os.cpu_count()} "
            f"cores, as uid {os.geteuid()}). Cold: stop, `create`, first `true`."
            " Exec: one `LocalBackend.exec` in the running sandbox (request to its supervisor,"
            " fork, stream, exit); ratios against the plain subprocess measured in the same run.",
            "",
            *table,
            "",
        ]
    )
    print(text)
    if args.record:
        prepend_results(text)

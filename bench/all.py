"""Run every benchmark in ``bench/``, one after the other (``make bench``).

Each benchmark is its own process (``python -m bench.<name> <args>``), with defaults chosen so
the whole set takes about 20 minutes on the 2-core reference machine; ``--quick`` runs each
with tiny counts instead (a smoke check that every script still works, a few minutes; its
figures mean nothing). ``--record`` is passed to each, which then prepends its section to
``bench/RESULTS.md`` (newest first). A benchmark whose file does not exist is skipped, one that
fails is reported at the end (the rest still run) and makes the exit status 1.

``executors`` needs PostgreSQL and Redis: it uses ``DATABASE_URL``'s server (the database name
is ignored: it creates its own) and ``REDIS_URL`` when they are set, else
``postgres://postgres@127.0.0.1:5432`` and ``redis://127.0.0.1:6379/0``. Every other benchmark
starts its own embedded-default server whatever those variables say.

Usage: ``.venv/bin/python bench/all.py [--only streams,run] [--quick] [--record]``;
``make bench BENCH_ARGS='--only streams --record'``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, where a module of bench/ could shadow one of the
# standard library's `http`.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import os
import subprocess
import time
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent

# name -> (default arguments, --quick arguments). In run order: the spine first.
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "run": (["--tasks", "50", "--lines", "20000"], ["--tasks", "3", "--lines", "500"]),
    "executors": (["--tasks", "40", "--burst", "200"], ["--tasks", "3", "--burst", "10"]),
    "sandbox": (["--runs", "50"], ["--runs", "3"]),
    "streams": ([], ["--quick"]),
    "http_servers": ([], ["--seconds", "1", "--rounds", "1", "--samples", "5"]),
    "peer": (
        ["--runs", "50", "--warm-runs", "20"],
        [
            "--runs",
            "3",
            "--warm-runs",
            "3",
            "--warmup",
            "1",
            "--events",
            "500",
            "--concurrent",
            "5",
            "--repeat",
            "1",
        ],
    ),
    "load": ([], ["--sessions", "10", "--tasks", "2", "--rate", "10", "--idle", "4"]),
    "auth": (["--requests", "300"], ["--requests", "20"]),
    "request_path": (["--requests", "200"], ["--requests", "5", "--warmup", "2"]),
    "integrations": (["--runs", "30"], ["--runs", "3"]),
    "llm": (["--turns", "30", "--chunks", "5000"], ["--turns", "3", "--chunks", "200"]),
    "debugger": (["--runs", "30", "--items", "50"], ["--runs", "3", "--items", "5"]),
    "python_kind": (["--cells", "30", "--lines", "5000"], ["--cells", "3", "--lines", "200"]),
    "console": (["--runs", "15", "--events", "50000"], ["--runs", "2", "--events", "1000"]),
    "coding_agents": (["--runs", "10"], ["--runs", "1"]),
}


def services_env() -> dict[str, str]:
    """The environment for the benchmarks: ``BENCH_PG`` (a PostgreSQL server URL without a
    database, for ``executors``) and ``REDIS_URL``, from the caller's or the local defaults."""
    env = dict(os.environ)
    db = os.environ.get("DATABASE_URL", "")
    if db.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(db)
        env.setdefault("BENCH_PG", urlunsplit((parts.scheme, parts.netloc, "", "", "")))
    env.setdefault("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated, of: {', '.join(BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke check")
    parser.add_argument("--record", action="store_true", help="each prepends to RESULTS.md")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    env = services_env()
    outcome: list[tuple[str, str, float]] = []
    for name in names:
        if not (ROOT / "bench" / f"{name}.py").exists():
            outcome.append((name, "skipped (no such file)", 0.0))
            continue
        default, quick = BENCHES[name]
        argv = [sys.executable, "-m", f"bench.{name}", *(quick if args.quick else default)]
        if args.record:
            argv.append("--record")
        print(f"\n==> {' '.join(argv[1:])}", flush=True)
        t0 = time.monotonic()
        code = subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode
        outcome.append(
            (name, "ok" if code == 0 else f"FAILED (exit {code})", time.monotonic() - t0)
        )
    print("\n| benchmark | result | seconds |\n|---|---|---|")
    for name, result, seconds in outcome:
        print(f"| {name} | {result} | {seconds:.0f} |")
    print(f"| all | | {sum(s for _, _, s in outcome):.0f} |")
    sys.exit(1 if any(r.startswith("FAILED") for _, r, _ in outcome) else 0)


if __name__ == "__main__":
    main()

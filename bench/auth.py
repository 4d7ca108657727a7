"""What authentication, scopes, team lookups and rate limiting cost per API request.

Two embedded-default daphnes run side by side: one with the request throttles on (per
credential and per team, the defaults) and one with them off. Requests alternate between them
so both see the same machine load. Figures, ms p50/p95 over ``--requests`` calls each:

* ``GET /health`` (no authentication, no DRF): the baseline round trip;
* ``GET /api/v1/sessions`` with an API key: key lookup and hash check, team roles, the scope
  check, the (empty) page, and with throttles on two counter updates in the cache.

Usage: ``.venv/bin/python -m bench.auth --requests 300 [--record]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time

import httpx

from bench.run import Server, prepend_results, summary

LIMITS_ON = {"THROTTLE_USER": "100000/min", "THROTTLE_TEAM": "100000/min"}
LIMITS_OFF = {"THROTTLE_USER": "none", "THROTTLE_TEAM": "none"}


def timed(http: httpx.Client, url: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    response = http.get(url, headers=headers)
    elapsed = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()
    on, off = Server(LIMITS_ON), Server(LIMITS_OFF)
    try:
        figures: dict[str, list[float]] = {k: [] for k in ("health", "on", "off")}
        with httpx.Client(timeout=30) as http:
            for server in (on, off):  # warm up: first requests import and open connections
                for _ in range(20):
                    timed(http, f"{server.url}/api/v1/sessions", server.headers)
            for _ in range(args.requests):
                figures["health"].append(timed(http, f"{off.url}/health", {}))
                figures["on"].append(timed(http, f"{on.url}/api/v1/sessions", on.headers))
                figures["off"].append(timed(http, f"{off.url}/api/v1/sessions", off.headers))
    finally:
        on.close()
        off.close()

    def p50(key: str) -> float:
        return sorted(figures[key])[len(figures[key]) // 2]

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"## {now}: cost of authentication and rate limits per request (embedded default)\n\n"
        f"Command: `.venv/bin/python -m bench.auth --requests {args.requests}` "
        f"(Python {platform.python_version()}).\n\n"
        "| request | p50 / p95 ms | ratio (p50) |\n|---|---|---|\n"
        f"| `GET /health` (baseline) | {summary(figures['health'])} | 1.0x |\n"
        f"| `GET /api/v1/sessions`, API key, throttles off | {summary(figures['off'])} | "
        f"{p50('off') / p50('health'):.1f}x health |\n"
        f"| `GET /api/v1/sessions`, API key, throttles on | {summary(figures['on'])} | "
        f"{p50('on') / p50('health'):.1f}x health, {p50('on') / p50('off'):.2f}x off |\n"
    )
    print(text)
    if args.record:
        prepend_results(text)


if __name__ == "__main__":
    main()

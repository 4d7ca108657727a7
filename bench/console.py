"""How fast the web console's session page opens, small and huge, in a real Chromium.

One embedded-default server (SQLite, inline executor). Two sessions of the `shell` agent, each
one task whose output is one event per line, written through the ORM (``manage.py shell``)
before the browser starts: a **small** one of 300 events (one page: the baseline) and a
**huge** one of ``--events`` events (50,000 by default). Debian's Chromium, driven by
Playwright, signs in through the console's form, then, interleaved, ``--runs`` times each:

* **open**: ms from ``page.goto`` until the newest event's text is on the page (the page, its
  modules, the task list and the last page of events, rendered);
* **load earlier** (huge only): ms from clicking *Load earlier events* until the previous page
  is on the page;
* the number of rendered event nodes after opening (the page's DOM stays bounded).

Usage: ``.venv/bin/python bench/console.py --runs 15 --events 50000 [--record]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Server, pct, prepend_results, summary  # noqa: E402

WARM_UP = 2
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# Runs in `manage.py shell` with the server's environment; prints the session id.
MAKE_SESSION = """
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from sessions.models import Agent, Event, Session
from sessions.services.sessions import session_create
from sessions.services.tasks import task_claim_next, task_create, task_finish

user = get_user_model().objects.get(username="admin")
agent = Agent.objects.get(slug="shell", owner=user, deleted_at__isnull=True)
session = session_create(owner=user, agent=agent, name="bench {n}")
with transaction.atomic():  # claimed before the server's executor can see it queued
    task, _ = task_create(user=user, session=session, input={{"command": "seq {n}"}})
    (running,) = task_claim_next(worker="bench", limit=1, session_id=session.pk)
session.refresh_from_db()
first, now = session.last_seq + 1, timezone.now()
events = (Event(session=session, task=task, seq=s, type="process.stdout", created_at=now,
                data={{"process_id": "p1", "text": f"row {{s}}\\n"}}) for s in range(first, {n}))
Event.objects.bulk_create(events, batch_size=5000)
Session.objects.filter(pk=session.pk).update(last_seq={n} - 1)
task_finish(task=running, status="succeeded", result={{"exit_code": 0}})
print(session.uuid)
"""


def make_session(server: Server, events: int) -> str:
    """A session whose log holds ``events`` events (the last one the task's final status)."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", MAKE_SESSION.format(n=events)],
        cwd=ROOT, env=server.env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"making the session failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def measure(server: Server, runs: int, events: int) -> dict[str, list[float]]:
    from playwright.sync_api import expect, sync_playwright

    small, huge = make_session(server, 300), make_session(server, events)
    password = (server.tmp / "admin-password").read_text().strip()
    out: dict[str, list[float]] = {"small": [], "huge": [], "earlier": [], "nodes": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{server.url}/console/login/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/sessions/")
        terminal = page.locator("pre.terminal")

        def open_page(session: str, newest: int) -> float:
            started = time.perf_counter()
            page.goto(f"{server.url}/console/sessions/{session}/")
            expect(terminal).to_contain_text(f"row {newest}\n", timeout=120_000)
            return (time.perf_counter() - started) * 1000

        def load_earlier() -> float:
            button = page.get_by_role("button", name="Load earlier events")
            started = time.perf_counter()
            button.click()
            expect(terminal).to_contain_text(f"row {events - 400}\n", timeout=120_000)
            return (time.perf_counter() - started) * 1000

        for _ in range(WARM_UP):
            open_page(small, 298)
            open_page(huge, events - 2)
        for _ in range(runs):
            out["small"].append(open_page(small, 298))
            out["huge"].append(open_page(huge, events - 2))
            out["nodes"].append(page.evaluate("document.querySelectorAll('#timeline .ev').length"))
            out["earlier"].append(load_earlier())
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--record", action="store_true", help="prepend to bench/RESULTS.md")
    args = parser.parse_args()
    server = Server()
    try:
        figures = measure(server, args.runs, args.events)
    finally:
        server.close()
    base = pct(figures["small"], 0.5)
    lines = [
        f"## Web console: opening a session page ({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"`.venv/bin/python bench/console.py --runs {args.runs} --events {args.events}`: one "
        "embedded server (SQLite), Debian's Chromium driven by Playwright, signed in through "
        "the form; ms from `page.goto` until the newest event is on the page, the two "
        "sessions interleaved.",
        "",
        "| page | p50 / p95 ms | p50 vs small |",
        "|---|---|---|",
        f"| session of 300 events (baseline) | {summary(figures['small'])} | 1.00x |",
        f"| session of {args.events:,} events | {summary(figures['huge'])} | "
        f"{pct(figures['huge'], 0.5) / base:.2f}x |",
        f"| *Load earlier events* on it (the previous 300) | {summary(figures['earlier'])} | "
        f"{pct(figures['earlier'], 0.5) / base:.2f}x |",
        "",
        f"Event nodes rendered after opening the large session: at most "
        f"{int(max(figures['nodes']))} (the newest page).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        prepend_results(text)


if __name__ == "__main__":
    main()

"""``runtime login``, ``agents``, ``sessions`` and ``tasks`` (except following: follow.py)."""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any

from runtime_cli import config as config_mod
from runtime_cli.api import Api
from runtime_cli.config import UsageError
from runtime_cli.context import Context
from runtime_cli.render import EventPrinter, print_json, record, short, table


def login(ctx: Context) -> int:
    """Check the URL and key against the server, then save them to the config file."""
    args = ctx.args
    url = config_mod.normalize_url(
        args.url or os.environ.get("RUNTIME_URL") or config_mod.DEFAULT_URL
    )
    key = args.key or os.environ.get("RUNTIME_API_KEY")
    if not key:
        if not sys.stdin.isatty():
            raise UsageError("give the API key with --key (or RUNTIME_API_KEY)")
        key = getpass.getpass("API key: ").strip()
        if not key:
            raise UsageError("no API key given")
    if not args.no_verify:
        with Api(config_mod.Config(url=url, api_key=key, source="flag")) as api:
            api.get("/api/v1/teams", limit=1)  # any valid credential may list its teams
    path = config_mod.write_file(url=url, api_key=key)
    ctx.say(f"Logged in to {url}; saved to {path}", "green")
    return 0


# -- agents ------------------------------------------------------------------------------------
def agents_list(ctx: Context) -> int:
    agents = ctx.api().list_all("/api/v1/agents", limit=ctx.args.limit)
    if ctx.json:
        print_json(agents)
        return 0
    rows = [
        {**a, "public": "yes" if a.get("is_public") else "no",
         "description": short(a.get("description") or "", 60)}
        for a in agents
    ]  # fmt: skip
    table(rows, ["slug", "name", "kind", "version", "public", "description"])
    return 0


def agents_show(ctx: Context) -> int:
    agent = ctx.api().get(f"/api/v1/agents/{ctx.args.agent}")
    if ctx.json:
        print_json(agent)
        return 0
    record(
        [(k, agent.get(k)) for k in ("slug", "id", "name", "kind", "version", "is_public",
                                     "owner", "description", "input_schema", "spec",
                                     "capabilities", "created_at", "updated_at")]
    )  # fmt: skip
    return 0


# -- sessions ----------------------------------------------------------------------------------
def _session_row(s: dict[str, Any]) -> dict[str, Any]:
    return {**s, "agent": (s.get("agent") or {}).get("slug"), "created": s.get("created_at")}


def sessions_list(ctx: Context) -> int:
    params = {"status": ctx.args.status} if ctx.args.status else {}
    sessions = ctx.api().list_all("/api/v1/sessions", limit=ctx.args.limit, **params)
    if ctx.json:
        print_json(sessions)
        return 0
    table([_session_row(s) for s in sessions],
          ["id", "name", "agent", "status", "last_seq", "created"])  # fmt: skip
    return 0


def _show_session(ctx: Context, session: dict[str, Any]) -> None:
    if ctx.json:
        print_json(session)
    elif getattr(ctx.args, "quiet", False):
        print(session["id"])
    else:
        row = _session_row(session)
        record([(k, row.get(k)) for k in ("id", "name", "agent", "status", "tags", "metadata",
                                          "last_seq", "active_task_count", "created_at",
                                          "updated_at")])  # fmt: skip


def sessions_create(ctx: Context) -> int:
    body: dict[str, Any] = {"agent": ctx.args.agent, "name": ctx.args.name or ""}
    if ctx.args.tag:
        body["tags"] = ctx.args.tag
    _show_session(ctx, ctx.api().post("/api/v1/sessions", body))
    return 0


def sessions_show(ctx: Context) -> int:
    _show_session(ctx, ctx.api().get(f"/api/v1/sessions/{ctx.args.session}"))
    return 0


def sessions_delete(ctx: Context) -> int:
    ctx.api().delete(f"/api/v1/sessions/{ctx.args.session}")
    ctx.say(f"Deleted session {ctx.args.session}")
    return 0


# -- tasks -------------------------------------------------------------------------------------
def show_task(ctx: Context, task: dict[str, Any]) -> None:
    if ctx.json:
        print_json(task)
        return
    duration = task.get("duration_ms")
    record([
        ("id", task["id"]), ("session", task.get("session_id")),
        ("agent", (task.get("agent") or {}).get("slug")), ("type", task.get("task_type")),
        ("status", task.get("status")), ("phase", task.get("current_phase")),
        ("queue_position", task.get("queue_position")), ("input", task.get("input")),
        ("created_at", task.get("created_at")), ("started_at", task.get("started_at")),
        ("finished_at", task.get("finished_at")),
        ("duration", f"{duration / 1000:.1f}s" if duration is not None else None),
        ("pending_action", task.get("pending_action")),
        ("result", task.get("result")), ("error", task.get("error")), ("usage", task.get("usage")),
    ])  # fmt: skip


def tasks_show(ctx: Context) -> int:
    show_task(ctx, ctx.api().get(f"/api/v1/tasks/{ctx.args.task}"))
    return 0


def tasks_cancel(ctx: Context) -> int:
    task = ctx.api().post(f"/api/v1/tasks/{ctx.args.task}/cancel")
    if ctx.json:
        print_json(task)
    else:
        ctx.say(f"Cancel requested: task {task['id']} is {task['status']}")
    return 0


def tasks_events(ctx: Context) -> int:
    args = ctx.args
    if args.follow:
        from runtime_cli.follow import follow_task  # websockets is imported only when needed

        return follow_task(ctx.config, args.task, after=args.after, json_lines=ctx.json,
                           transport=args.transport, cancel_on_interrupt=False)  # fmt: skip
    printer = EventPrinter(json_lines=ctx.json)
    for event in ctx.api().events(args.task, after=args.after):
        printer.handle(event)
    printer.close()
    return 0


def tasks_resume(ctx: Context) -> int:
    """Answer a waiting task: ``--reply`` to a question, ``--approve``/``--deny`` a tool call."""
    args = ctx.args
    body: dict[str, Any] = {}
    if args.reply is not None:
        body["reply"] = args.reply
    if args.decision:
        body["decision"] = args.decision
        if args.reason:
            body["reason"] = args.reason
    if not body:
        raise UsageError("give --reply TEXT, --approve or --deny")
    task = ctx.api().post(f"/api/v1/tasks/{args.task}/resume", body)
    if ctx.json:
        print_json(task)
    else:
        ctx.say(f"Answered: task {task['id']} is {task['status']} again")
    return 0

"""``runtime run`` (a task on an agent, followed live) and ``runtime chat`` (a message)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from runtime_cli.commands import show_task
from runtime_cli.config import UsageError
from runtime_cli.context import Context


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f'{what} must be a JSON object, like \'{{"command": "ls"}}\'')
    return value


def task_input(args: Any) -> dict[str, Any]:
    """The task's input from ``--input``, ``--input-file`` (``-``: stdin) and/or the words
    after ``--`` (which become ``input.argv``, what command agents run).

    Raises:
        UsageError: invalid JSON, or the same thing given twice.
    """
    if args.input is not None and args.input_file is not None:
        raise UsageError("give --input or --input-file, not both")
    payload: dict[str, Any] = {}
    if args.input is not None:
        payload = _json_object(args.input, "--input")
    elif args.input_file is not None:
        try:
            text = sys.stdin.read() if args.input_file == "-" else Path(args.input_file).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read --input-file: {exc}") from exc
        payload = _json_object(text, f"--input-file {args.input_file}")
    argv = list(args.argv or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    if argv:
        if "argv" in payload or "command" in payload:
            raise UsageError("give the command after -- or in the input, not both")
        payload["argv"] = argv
    return payload


def _session_for(ctx: Context) -> dict[str, Any]:
    """``--session``, checked to run this agent (without it, :func:`run` uses the oneshot API,
    which creates the session and the task together)."""
    api, args = ctx.api(), ctx.args
    session = dict(api.get(f"/api/v1/sessions/{args.session}"))
    agent = session.get("agent") or {}
    if args.agent not in (agent.get("slug"), agent.get("id")):
        raise UsageError(
            f"session {args.session} runs agent {agent.get('slug')!r}, not {args.agent!r}"
        )
    return session


def _create(ctx: Context, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Queue the task: on ``--session``, or with a new session through ``POST /oneshot`` with
    no wait (one transaction: input the agent refuses leaves no empty session behind)."""
    api, args = ctx.api(), ctx.args
    if args.session:
        session = _session_for(ctx)
        # A fresh Idempotency-Key: a retried request cannot queue a second task.
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        task = api.post(f"/api/v1/sessions/{session['id']}/tasks", body, headers=headers)
        return session, dict(task)
    oneshot = {"agent": args.agent, "input": body["input"], "task_type": body["task_type"],
               "config": body["config"], "session": {"name": args.name or ""},
               "wait_timeout_s": 0}  # fmt: skip
    created = api.post("/api/v1/oneshot", oneshot)
    return dict(created["session"]), dict(created["task"])


def run(ctx: Context) -> int:
    args = ctx.args
    payload = task_input(args)
    config: dict[str, Any] = _json_object(args.config, "--config") if args.config else {}
    if args.timeout is not None:
        config["timeout_s"] = args.timeout
    body = {"task_type": args.type, "input": payload, "config": config,
            "multitask_strategy": args.strategy}  # fmt: skip
    session, task = _create(ctx, body)
    if args.no_follow:
        if ctx.json:
            show_task(ctx, task)
        else:
            print(task["id"])
            ctx.say(f"queued task {task['id']} on session {session['id']}", "dim")
        return 0
    if not ctx.json:
        ctx.say(f"task {task['id']} · session {session['id']} · agent {args.agent}", "dim")
    from runtime_cli.follow import follow_task  # websockets is imported only when needed

    return follow_task(ctx.config, task["id"], json_lines=ctx.json, transport=args.transport)


def chat(ctx: Context) -> int:
    args = ctx.args
    message = sys.stdin.read() if args.message == "-" else args.message
    if not message.strip():
        raise UsageError("the message is empty")
    body: dict[str, Any] = {"message": message}
    task = ctx.api().post(f"/api/v1/sessions/{args.session}/messages", body)
    if args.no_follow:
        show_task(ctx, task) if ctx.json else print(task["id"])
        return 0
    from runtime_cli.follow import follow_task  # websockets is imported only when needed

    return follow_task(ctx.config, task["id"], json_lines=ctx.json, transport=args.transport)

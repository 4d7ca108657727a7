"""The ``runtime`` command line: argument parsing and the exit statuses (docs/cli.md).

Exit statuses: 0 success (for ``run``/``chat``: the task succeeded), 1 an API or connection
error, or a task that failed / was cancelled / timed out, 2 a usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.text import Text

from runtime_cli import commands, files, run
from runtime_cli.api import ApiError
from runtime_cli.config import UsageError
from runtime_cli.context import Context

Handler = Callable[[Context], int]
EPILOG = """\
configuration: --url/--key, else RUNTIME_URL/RUNTIME_API_KEY, else the file written by
`runtime login` (~/.config/agent-runtime/config.toml); the URL defaults to http://127.0.0.1:8000.
exit status: 0 ok / task succeeded, 1 API error or task failed, 2 usage error, 130 Ctrl-C.
"""


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the command (``runtime --json agents list`` and
    ``runtime agents list --json`` both work): SUPPRESS keeps a later default from
    overwriting an earlier value."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="server URL (RUNTIME_URL)")
    common.add_argument("--key", default=argparse.SUPPRESS, help="API key (RUNTIME_API_KEY)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output (JSON; events as JSON lines)")  # fmt: skip
    return common


def _follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=["auto", "ws", "sse"], default="auto",
                        help="how to follow events: WebSocket, SSE, or WebSocket falling back "
                             "to SSE (default)")  # fmt: skip
    parser.add_argument("--no-follow", action="store_true",
                        help="print the task id and return at once")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="runtime", parents=[common], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Command-line client of the agent runtime server's API.",
    )  # fmt: skip
    top = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(group: argparse._SubParsersAction, name: str, handler: Handler,  # type: ignore[type-arg]
            help_text: str) -> argparse.ArgumentParser:  # fmt: skip
        sub: argparse.ArgumentParser = group.add_parser(name, parents=[common], help=help_text,
                                                        description=help_text)  # fmt: skip
        sub.set_defaults(handler=handler)
        return sub

    def group(name: str, help_text: str) -> argparse._SubParsersAction:  # type: ignore[type-arg]
        sub = top.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=None, group_parser=sub)
        return sub.add_subparsers(dest="action", metavar="ACTION")

    p = add(top, "login", commands.login, "check and save the server URL and API key")
    p.add_argument("--no-verify", action="store_true", help="save without asking the server")

    agents = group("agents", "agents you can use")
    p = add(agents, "list", commands.agents_list, "list agents")
    p.add_argument("--limit", type=int, default=None, help="at most this many")
    p = add(agents, "show", commands.agents_show, "show one agent")
    p.add_argument("agent", help="slug or id")

    sessions = group("sessions", "sessions (a conversation with its own workspace)")
    p = add(sessions, "list", commands.sessions_list, "list sessions, newest first")
    p.add_argument("--status", help="only these statuses, e.g. active,idle")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p = add(sessions, "create", commands.sessions_create, "create a session")
    p.add_argument("--agent", required=True, help="agent slug or id")
    p.add_argument("--name", default="")
    p.add_argument("--tag", action="append", help="a tag (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the new id")
    p = add(sessions, "show", commands.sessions_show, "show one session")
    p.add_argument("session")
    p = add(sessions, "delete", commands.sessions_delete, "delete a session")
    p.add_argument("session")

    p = add(top, "run", run.run, "run a task on an agent and follow it live")
    p.add_argument("agent", help="agent slug or id")
    p.add_argument("argv", nargs="*", metavar="-- COMMAND ARGS",
                   help="for command agents: what to run (becomes input.argv)")  # fmt: skip
    p.add_argument("--input", help="the task input, a JSON object")
    p.add_argument("--input-file", help="read the input (JSON) from this file; - for stdin")
    p.add_argument("--session", help="run in this session (default: a new one)")
    p.add_argument("--name", help="name of the new session")
    p.add_argument("--type", default="run", help="task type (default run)")
    p.add_argument("--config", help="task config, a JSON object (timeout_s, env, limits …)")
    p.add_argument("--timeout", type=float, help="wall-clock limit in seconds (config.timeout_s)")
    p.add_argument("--strategy", choices=["enqueue", "reject", "interrupt"], default="enqueue",
                   help="when the session is busy (default enqueue)")  # fmt: skip
    _follow_options(p)

    tasks = group("tasks", "tasks (one unit of work on a session)")
    p = add(tasks, "show", commands.tasks_show, "show one task")
    p.add_argument("task")
    p = add(tasks, "cancel", commands.tasks_cancel, "ask the server to cancel a task")
    p.add_argument("task")
    p = add(tasks, "events", commands.tasks_events, "print a task's events")
    p.add_argument("task")
    p.add_argument("--follow", "-f", action="store_true", help="keep following until it ends")
    p.add_argument("--after", type=int, default=0, help="only events after this seq")
    p.add_argument("--transport", choices=["auto", "ws", "sse"], default="auto")
    p = add(tasks, "resume", commands.tasks_resume, "answer a task that waits for you")
    p.add_argument("task")
    p.add_argument("--reply", help="the answer to the task's question")
    decision = p.add_mutually_exclusive_group()
    decision.add_argument("--approve", dest="decision", action="store_const", const="approve",
                          help="let the tool call it asks about run")  # fmt: skip
    decision.add_argument("--deny", dest="decision", action="store_const", const="deny",
                          help="refuse it (the model is told)")  # fmt: skip
    p.add_argument("--reason", help="with --deny: why, told to the model")

    file_group = group("files", "a session's workspace files")
    p = add(file_group, "ls", files.ls, "list a workspace directory")
    p.add_argument("session")
    p.add_argument("path", nargs="?", default="")
    p.add_argument("-r", "--recursive", action="store_true")
    p = add(file_group, "upload", files.upload, "upload a local file")
    p.add_argument("session")
    p.add_argument("local")
    p.add_argument("remote", nargs="?", help="workspace path (default: the file's name)")
    p.add_argument("--extract", action="store_true",
                   help="the file is an archive: unpack it into REMOTE (a directory)")  # fmt: skip
    p = add(file_group, "download", files.download, "download a workspace file")
    p.add_argument("session")
    p.add_argument("remote")
    p.add_argument("local", nargs="?", help="local path or directory (default: ./name; - stdout)")

    p = add(top, "chat", run.chat, "send a message to a session's agent and stream the answer")
    p.add_argument("session")
    p.add_argument("message", help="the message; - reads it from stdin")
    _follow_options(p)
    return parser


def _error(text: str) -> None:
    Console(file=sys.stderr, highlight=False, soft_wrap=True).print(
        Text("error: ", style="bold red") + Text(text)
    )


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; for ``run``, everything after ``--`` is the command to run.

    argparse alone cannot do this: ``run AGENT`` fills the ``*`` positional right away (with
    nothing), so ``--`` after an option would be "unrecognized arguments".
    """
    if "--" in argv and "run" in argv[: argv.index("--")]:
        cut = argv.index("--")
        args = parser.parse_args(argv[:cut])
        if getattr(args, "handler", None) is run.run:
            args.argv = [*(args.argv or []), *argv[cut + 1 :]]
            return args
    return parser.parse_args(argv)


def _has_key(ctx: Context) -> bool:
    try:
        return ctx.config.api_key is not None
    except UsageError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        (getattr(args, "group_parser", None) or parser).print_help(sys.stderr)
        return 2
    ctx = Context(args)
    try:
        return handler(ctx)
    except UsageError as exc:
        _error(str(exc))
        return 2
    except ApiError as exc:
        text = exc.line()
        if exc.status == 401 and not _has_key(ctx):
            text += " — no API key: pass --key, set RUNTIME_API_KEY or run `runtime login`"
        _error(text)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`runtime … | head`): stop quietly, as other tools do; stdout
        # is pointed at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        ctx.close()

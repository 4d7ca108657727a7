"""``runtime files ls | upload | download``: a session's workspace (sessions/apis/workspace.py)."""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
import tempfile
from pathlib import Path

from runtime_cli.api import ApiError
from runtime_cli.config import UsageError
from runtime_cli.context import Context
from runtime_cli.render import print_json, table


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def ls(ctx: Context) -> int:
    args = ctx.args
    listing = ctx.api().get(
        f"/api/v1/sessions/{args.session}/workspace/files",
        path=args.path or "", recursive="true" if args.recursive else None,
    )  # fmt: skip
    if ctx.json:
        print_json(listing)
        return 0
    rows = [
        {"type": e["type"], "size": _size(e["size"]) if e["type"] == "file" else "",
         "modified": str(e.get("modified", ""))[:19].replace("T", " "),
         "path": e["path"] + ("/" if e["type"] == "directory" else "")}
        for e in listing["entries"]
    ]  # fmt: skip
    table(rows, ["type", "size", "modified", "path"])
    if listing.get("truncated"):
        ctx.say("(the listing was truncated by the server)", "yellow")
    return 0


def upload(ctx: Context) -> int:
    args = ctx.args
    local = Path(args.local)
    if local.is_dir():
        raise UsageError(f"{local} is a directory: upload an archive of it with --extract")
    if not local.is_file():
        raise UsageError(f"{local}: no such file")
    remote = args.remote or local.name
    if remote.endswith("/"):
        remote += local.name
    with local.open("rb") as source:
        result = ctx.api().upload(args.session, remote, source, size=local.stat().st_size,
                                  extract=args.extract)  # fmt: skip
    if ctx.json:
        print_json(result)
    else:
        written = result.get("files") or [remote]
        shown = written[0] if len(written) == 1 else f"{len(written)} files"
        ctx.say(f"uploaded {local} → {shown} ({_size(local.stat().st_size)})")
    return 0


def download(ctx: Context) -> int:
    args = ctx.args
    name = posixpath.basename(args.remote.rstrip("/")) or "download"
    if args.local == "-":
        size = ctx.api().download(args.session, args.remote, sys.stdout.buffer)
        sys.stdout.flush()
        return 0
    target = Path(args.local) if args.local else Path(name)
    if target.is_dir():
        target = target / name
    # Into a temporary file next to the target first: a failed download leaves nothing behind
    # and never truncates an existing file.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as if created by open(), not mkstemp's 0600
        with os.fdopen(fd, "wb") as out:
            size = ctx.api().download(args.session, args.remote, out)
        os.replace(tmp, target)
    except (ApiError, OSError, KeyboardInterrupt):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if not ctx.json:
        ctx.say(f"downloaded {args.remote} → {target} ({_size(size)})")
    return 0

"""A session as ONE self-contained HTML replay file (issue 7 §4).

:func:`render_session_html` returns a document that makes no request of its own: CSS is
inline, there is no script, images are ``data:`` URIs, and a ``Content-Security-Policy`` meta
tag (``default-src 'none'``) stops anything that slipped through, including inside embedded HTML
outputs (an ``<iframe srcdoc>`` inherits it). It holds:

- a header: name, id, agent, status, dates, the last seq, and the tasks;
- the conversation (``selectors.message_list``), a Markdown subset rendered safely;
- every event in a timeline of ``<details>`` elements, with outputs rendered:
  ``process.stdout``/``stderr`` and tracebacks as preformatted text (ANSI colours as spans),
  ``output.display`` MIME bundles (images as ``<img src="data:…">``, ``text/html`` in an
  ``<iframe sandbox="" srcdoc="…">``, JSON pretty-printed, Markdown, plain text);
  payloads moved to an artifact (over ``EVENT_INLINE_MAX_BYTES``) are loaded back when small;
- the workspace files: each file up to ``SHARE_EXPORT_MAX_FILE_BYTES`` is embedded as a
  ``data:`` download link while the total stays under ``SHARE_EXPORT_MAX_TOTAL_BYTES``;
  bigger files are listed without content.

Everything from the session is escaped by the template engine or by ``sessions.export_text``.
Event bodies count against ``SHARE_EXPORT_MAX_EVENT_BYTES`` and at most
``SHARE_EXPORT_MAX_EVENTS`` events are rendered; the rest is summed up in a note.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import slugify

from runtime_project.exceptions import ApplicationError
from sandboxes import paths
from sessions import selectors
from sessions.export_text import ansi_to_html, markdown_to_html, strip_ansi
from sessions.models import Artifact, Session, Task

CSP = (
    "default-src 'none'; img-src data:; media-src data:; font-src data:; "
    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)
_PAGE = 1000
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")
_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# A MIME bundle shows its richest representation, as Jupyter front-ends do.
_MIME_ORDER = (
    "text/html",
    "image/svg+xml",
    *_IMAGES,
    "text/markdown",
    "application/json",
    "text/latex",
    "text/plain",
)
_MAX_TASKS = 500


@dataclass
class _Budget:
    """Bytes the export may still embed (workspace files and artifact payloads)."""

    per_file: int
    remaining: int

    def take(self, size: int) -> bool:
        if size > self.per_file or size > self.remaining:
            return False
        self.remaining -= size
        return True


def export_filename(session: Session) -> str:
    """``session-<name>-<first 8 of the id>.html`` (ASCII, safe in a header)."""
    name = slugify(session.name)[:40] or "export"
    return f"session-{name}-{str(session.uuid)[:8]}.html"


def render_session_html(*, session: Session, now: datetime | None = None) -> str:
    """The export document of ``session`` (see the module doc), as a string."""
    budget = _Budget(
        per_file=settings.SHARE_EXPORT_MAX_FILE_BYTES,
        remaining=settings.SHARE_EXPORT_MAX_TOTAL_BYTES,
    )
    events, omitted = _events(session, budget)
    files = _workspace_files(session, budget)
    context = {
        "csp": CSP,
        "session": session,
        "agent": session.agent,
        "exported_at": now or timezone.now(),
        "version": getattr(settings, "SERVER_VERSION", ""),
        "tasks": _tasks(session),
        "messages": _messages(session),
        "events": events,
        "omitted_events": omitted,
        "files": files,
        "file_limit": settings.SHARE_EXPORT_MAX_FILE_BYTES,
    }
    return render_to_string("sessions/export.html", context)


def _tasks(session: Session) -> list[Task]:
    return list(
        Task.objects.filter(session=session)
        .select_related("agent")
        .order_by("created_at")[:_MAX_TASKS]
    )


def _messages(session: Session) -> list[dict[str, Any]]:
    out = []
    after = 0
    while True:
        page = selectors.message_list(session=session, after=after, limit=_PAGE)
        for message in page:
            content = message["content"]
            if not isinstance(content, str):
                content = json.dumps(content, indent=2, ensure_ascii=False, default=str)
            calls = [
                {"name": c.get("name", ""), "arguments": _pretty(c.get("arguments"))}
                for c in message.get("tool_calls") or []
                if isinstance(c, dict)
            ]
            out.append({**message, "html": markdown_to_html(content), "tool_calls": calls})
        if len(page) < _PAGE:
            return out
        after = page[-1]["seq"]


def _all_events(session: Session) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        page = selectors.event_list(session=session, after=after, limit=_PAGE)
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1]["seq"]


def _events(session: Session, budget: _Budget) -> tuple[list[dict[str, Any]], int]:
    """Rendered events (``seq``, ``ts``, ``type``, ``css``, ``task_id``, ``preview``, ``body``) and
    how many were left out by the count or size limits."""
    out: list[dict[str, Any]] = []
    size_left = settings.SHARE_EXPORT_MAX_EVENT_BYTES
    for envelope in _all_events(session):
        if len(out) >= settings.SHARE_EXPORT_MAX_EVENTS:
            break
        data = _full_data(session, envelope["data"], budget)
        size = len(json.dumps(data, default=str))
        if size > size_left:
            break
        size_left -= size
        out.append(
            {
                "seq": envelope["seq"],
                "ts": envelope["ts"],
                "type": envelope["type"],
                "css": re.sub(r"[^a-z0-9]+", "-", envelope["type"].lower()),
                "task_id": envelope["task_id"],
                "preview": _preview(envelope["type"], data),
                "body": _event_body(envelope["type"], data),
            }
        )
    return out, max(session.last_seq - len(out), 0)


def _full_data(session: Session, data: dict[str, Any], budget: _Budget) -> dict[str, Any]:
    """An event's data, with a payload that was moved to an artifact loaded back when it fits
    the budget (else the stored preview)."""
    ref = data.get("artifact") if data.get("truncated") else None
    try:
        artifact_id = uuid.UUID(str(ref["id"])) if isinstance(ref, dict) else None
    except (KeyError, ValueError):
        artifact_id = None
    if artifact_id is None:
        return data
    artifact = Artifact.objects.filter(session=session, uuid=artifact_id).first()
    if artifact is None or not budget.take(artifact.size):
        return data
    try:
        with artifact.file.open("rb") as handle:
            loaded = json.loads(handle.read(budget.per_file + 1))
    except (OSError, ValueError):
        return data
    return loaded if isinstance(loaded, dict) else data


def _preview(type_: str, data: dict[str, Any]) -> str:
    """One line for the timeline's summary (escaped by the template)."""
    if type_ == "task.status":
        status, phase = str(data.get("status", "")), str(data.get("phase", ""))
        text = status if phase in ("", status) else f"{status} ({phase})"
    elif type_ in ("tool.call", "tool.result"):
        text = str(data.get("name", ""))
    elif type_ == "process.exit":
        text = f"exit {data.get('exit_code', data.get('code', ''))}"
    elif type_ == "output.error":
        text = f"{data.get('ename', '')}: {data.get('evalue', '')}"
    else:
        value = next((data[k] for k in ("text", "message", "output") if k in data), "")
        text = value if isinstance(value, str) else ""
    text = " ".join(strip_ansi(text).split())
    return text[:100] + ("…" if len(text) > 100 else "")


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _json(value: Any) -> SafeString:
    return format_html('<pre class="json">{}</pre>', _pretty(value))


def _text(value: Any) -> str:
    """Jupyter stores multi-line strings as lists of lines."""
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _event_body(type_: str, data: dict[str, Any]) -> SafeString:
    if type_ in ("process.stdout", "process.stderr"):
        stream = type_.split(".")[1]
        return format_html(
            '<pre class="out {}">{}</pre>', stream, ansi_to_html(_text(data.get("text", "")))
        )
    if type_ == "output.display":
        bundle = data.get("data")
        return mime_bundle_html(bundle if isinstance(bundle, dict) else data)
    if type_ == "output.error":
        trace = data.get("traceback") or []
        text = "\n".join(trace) if isinstance(trace, list) else _text(trace)
        return format_html(
            '<p class="error">{}: {}</p><pre class="out stderr">{}</pre>',
            _text(data.get("ename", "Error")),
            _text(data.get("evalue", "")),
            ansi_to_html(text),
        )
    if type_ in ("message.user", "message.completed") and isinstance(data.get("text"), str):
        rest = {k: v for k, v in data.items() if k != "text"}
        text = markdown_to_html(data["text"])
        return format_html('<div class="md">{}</div>{}', text, _json(rest) if rest else "")
    if type_ == "message.delta":
        return format_html('<pre class="out">{}</pre>', _text(data.get("text", "")))
    if type_ == "tool.result" and "output" in data:
        rest = {k: v for k, v in data.items() if k != "output"}
        output = ansi_to_html(_text(data["output"]))
        return format_html('{}<pre class="out">{}</pre>', _json(rest), output)
    return _json(data)


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def mime_bundle_html(bundle: dict[str, Any]) -> SafeString:
    """A Jupyter MIME bundle's richest representation as safe HTML (unknown types: JSON)."""
    mime = next((m for m in _MIME_ORDER if m in bundle), None)
    if mime is None:
        return _json(bundle)
    value = bundle[mime]
    if mime == "text/html":
        # srcdoc is attribute-escaped; sandbox="" runs no script and gives a unique origin.
        return format_html(
            '<iframe class="html-output" sandbox="" referrerpolicy="no-referrer" '
            'srcdoc="{}"></iframe>',
            _text(value),
        )
    if mime == "image/svg+xml":
        # As an <img>, an SVG runs no script and loads nothing.
        uri = _data_uri(mime, _text(value).encode())
        return format_html('<img class="output" alt="SVG output" src="{}">', uri)
    if mime in _IMAGES:
        raw = _text(value)
        if not _BASE64.match(raw):
            return _json(bundle)
        uri = f"data:{mime};base64,{''.join(raw.split())}"
        return format_html('<img class="output" alt="{} output" src="{}">', mime, uri)
    if mime == "text/markdown":
        return format_html('<div class="md">{}</div>', markdown_to_html(_text(value)))
    if mime == "application/json":
        return _json(value)
    return format_html('<pre class="out">{}</pre>', ansi_to_html(_text(value)))


def _workspace_files(session: Session, budget: _Budget) -> list[dict[str, Any]]:
    """The workspace's regular files (``path``, ``size``, ``modified``, ``href`` or None)."""
    root = session.workspace_path
    if not root.is_dir():
        return []
    try:
        entries = paths.list_dir(root, "", recursive=True, limit=settings.WORKSPACE_MAX_FILES)
    except ApplicationError:
        return []
    out = []
    for entry in entries:
        if entry.type != "file":
            continue
        href = None
        if entry.size <= budget.per_file and entry.size <= budget.remaining:
            href = _embed(root, entry.path, budget)
        out.append(
            {
                "path": entry.path,
                "name": entry.path.rsplit("/", 1)[-1],
                "size": entry.size,
                "modified": datetime.fromtimestamp(entry.modified, tz=UTC),
                "href": href,
            }
        )
    return out


def _embed(root: Any, path: str, budget: _Budget) -> str | None:
    """A ``data:`` URI of the file, or None if it vanished or grew past the budget."""
    try:
        with paths.open_read(root, path) as handle:
            payload = handle.read(budget.per_file + 1)
    except (ApplicationError, OSError):
        return None
    if not budget.take(len(payload)):
        return None
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return _data_uri(mime, payload)

"""Text to safe HTML for the session export (``sessions.export``): terminal output with ANSI
colour codes, and a small Markdown subset for chat messages.

Both functions escape every character of their input first and only then add markup of their
own, so nothing a program printed or a model wrote can become HTML. They return
``SafeString`` for the template.
"""

from __future__ import annotations

import html
import re

from django.utils.safestring import SafeString, mark_safe

# CSI sequences (ESC [ params letter), OSC sequences (ESC ] … BEL or ESC \), and any other
# two-character escape; C0 controls but tab, newline and carriage return.
_ESCAPES = re.compile(
    r"\x1b\[(?P<params>[0-9;:?]*)(?P<final>[@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-_]?"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")
_COLOURS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")


def _sgr(params: str, state: dict[str, str]) -> None:
    """Apply one SGR (``ESC [ … m``) to ``state`` (keys ``fg``, ``bg``, ``bold``, ``dim``,
    ``italic``, ``underline``); 256-colour and RGB colours are dropped (kept as default)."""
    codes = [int(c) if c.isdigit() else 0 for c in re.split("[;:]", params or "0")]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code == 0:
            state.clear()
        elif code in (1, 2, 3, 4):
            state[("bold", "dim", "italic", "underline")[code - 1]] = "1"
        elif code == 22:
            state.pop("bold", None)
            state.pop("dim", None)
        elif code in (23, 24):
            state.pop("italic" if code == 23 else "underline", None)
        elif 30 <= code <= 37 or 90 <= code <= 97:
            state["fg"] = ("b" if code >= 90 else "") + _COLOURS[code % 10]
        elif 40 <= code <= 47 or 100 <= code <= 107:
            state["bg"] = ("b" if code >= 100 else "") + _COLOURS[code % 10]
        elif code == 39:
            state.pop("fg", None)
        elif code == 49:
            state.pop("bg", None)
        elif code in (38, 48):  # 38;5;n or 38;2;r;g;b: skip the arguments
            i += 2 if codes[i + 1 : i + 2] == [5] else 4
        i += 1


def _classes(state: dict[str, str]) -> str:
    names = [f"ansi-{k}" for k in ("bold", "dim", "italic", "underline") if k in state]
    if "fg" in state:
        names.append(f"ansi-fg-{state['fg']}")
    if "bg" in state:
        names.append(f"ansi-bg-{state['bg']}")
    return " ".join(names)


def ansi_to_html(text: str) -> SafeString:
    """``text`` escaped, with SGR colours/styles as ``<span class="ansi-…">`` and every other
    escape sequence and control character removed."""
    out: list[str] = []
    state: dict[str, str] = {}
    pos = 0

    def emit(chunk: str) -> None:
        chunk = _CONTROLS.sub("", chunk)
        if not chunk:
            return
        escaped = html.escape(chunk, quote=False)
        classes = _classes(state)
        out.append(f'<span class="{classes}">{escaped}</span>' if classes else escaped)

    for match in _ESCAPES.finditer(text):
        emit(text[pos : match.start()])
        pos = match.end()
        if match.group("final") == "m":
            _sgr(match.group("params"), state)
    emit(text[pos:])
    return mark_safe("".join(out))  # noqa: S308  # every piece was escaped above


def strip_ansi(text: str) -> str:
    """``text`` without escape sequences and control characters (not escaped)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


# Markdown subset: fenced code blocks, ATX headings (# to ######), bullet and numbered lists,
# block quotes, paragraphs with hard line breaks; inline code, **bold**, *italic*/_italic_, and
# [text](url) links shown as "text (url)" (the export makes no requests, not even on a click).
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,9}[.)]\s+(.*)$")
_QUOTE = re.compile(r"^\s*&gt;\s?(.*)$")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])|(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")


def _inline(escaped: str) -> str:
    """Inline markup on already-escaped text; code spans are protected from the rest."""
    codes: list[str] = []

    def keep_code(m: re.Match[str]) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _INLINE_CODE.sub(keep_code, escaped)
    text = _LINK.sub(r'\1 <span class="url">(\2)</span>', text)
    text = _BOLD.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", text)
    text = _ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m.group(1))], text)


def markdown_to_html(text: str) -> SafeString:
    """A safe rendering of a Markdown subset (see above); raw HTML in ``text`` is shown as
    text. Unclosed code fences run to the end."""
    lines = html.escape(strip_ansi(text), quote=True).replace("\r\n", "\n").split("\n")
    out: list[str] = []
    paragraph: list[str] = []
    list_tag: str | None = None

    def flush_paragraph() -> None:
        if paragraph:
            out.append("<p>" + "<br>".join(_inline(line) for line in paragraph) + "</p>")
            paragraph.clear()

    def close_list() -> None:
        nonlocal list_tag
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            flush_paragraph()
            close_list()
            fence = _FENCE.match(line).group(1)  # type: ignore[union-attr]
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(lines[i])
                i += 1
            out.append("<pre><code>" + "\n".join(body) + "</code></pre>")
            i += 1
            continue
        heading, bullet = _HEADING.match(line), _BULLET.match(line)
        numbered, quote = _NUMBERED.match(line), _QUOTE.match(line)
        if not line.strip():
            flush_paragraph()
            close_list()
        elif heading:
            flush_paragraph()
            close_list()
            tag = f"h{min(len(heading.group(1)) + 2, 6)}"  # h3…h6: below the page's own
            out.append(f"<{tag}>{_inline(heading.group(2))}</{tag}>")
        elif bullet or numbered:
            flush_paragraph()
            tag = "ul" if bullet else "ol"
            if list_tag != tag:
                close_list()
                out.append(f"<{tag}>")
                list_tag = tag
            out.append(f"<li>{_inline((bullet or numbered).group(1))}</li>")  # type: ignore[union-attr]
        elif quote:
            flush_paragraph()
            close_list()
            out.append(f"<blockquote>{_inline(quote.group(1))}</blockquote>")
        else:
            close_list()
            paragraph.append(line)
        i += 1
    flush_paragraph()
    close_list()
    return mark_safe("\n".join(out))  # noqa: S308  # built from escaped text only

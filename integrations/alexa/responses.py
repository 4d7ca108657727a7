"""Alexa response envelopes (``ask_sdk_model`` types, serialized by the SDK's serializer) and
agent output turned into something a voice can say.

Alexa's response format: ``{"version": "1.0", "sessionAttributes": {...}, "response":
{"outputSpeech": {"type": "PlainText", "text"}, "card": {"type": "Simple", "title",
"content"}, "reprompt": {"outputSpeech": ...}, "shouldEndSession": bool}}``. Limits: 8000
characters of speech and of card content, 24 KiB for the whole response
(developer.amazon.com, "Request and Response JSON Reference").
"""

from __future__ import annotations

import re
from typing import Any

from ask_sdk_core.serialize import DefaultSerializer
from ask_sdk_model import Response, ResponseEnvelope
from ask_sdk_model.ui import PlainTextOutputSpeech, Reprompt, SimpleCard

SPEECH_MAX_CHARS = 8000
CARD_MAX_CHARS = 8000
TITLE_MAX_CHARS = 200
ELLIPSIS = "…"

_serializer = DefaultSerializer()

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_FENCE = re.compile(r"^\s*(```|~~~)[^\n]*$", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
_QUOTE = re.compile(r"^\s{0,3}>\s?", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+", re.MULTILINE)
_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$", re.MULTILINE)
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$", re.MULTILINE)
_EMPHASIS = re.compile(r"(?<!\w)(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1(?!\w)")
_CODE = re.compile(r"`([^`]*)`")
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def speakable(text: str) -> str:
    """``text`` (an agent's answer: Markdown, terminal output) as plain text to read aloud:
    Markdown syntax, terminal colour codes and control characters removed, whitespace
    tidied. Not truncated (see :func:`truncate`)."""
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    text = _CONTROL.sub("", text)
    text = _FENCE.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _TABLE_RULE.sub("", text)
    text = _RULE.sub("", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub("", text)
    text = _CODE.sub(r"\1", text)
    for _ in range(2):  # nested emphasis: ***x*** is ** around *x*
        text = _EMPHASIS.sub(r"\2", text)
    text = text.replace("|", " ")
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when there is one in
    the last fifth, ending with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    space = cut.rfind(" ")
    if space > limit * 4 // 5:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def envelope(
    *,
    speech: str | None = None,
    reprompt: str | None = None,
    card_title: str | None = None,
    card_text: str | None = None,
    end_session: bool | None = None,
) -> dict[str, Any]:
    """A response envelope as a JSON-ready dict. ``None`` fields are left out (a
    ``SessionEndedRequest`` gets ``{"version": "1.0", "response": {}}``)."""
    response = Response(
        output_speech=_speech(speech) if speech else None,
        reprompt=Reprompt(output_speech=_speech(reprompt)) if reprompt else None,
        card=(
            SimpleCard(
                title=truncate(card_title or "", TITLE_MAX_CHARS),
                content=truncate(card_text, CARD_MAX_CHARS),
            )
            if card_text
            else None
        ),
        should_end_session=end_session,
    )
    data = _serializer.serialize(ResponseEnvelope(version="1.0", response=response))
    assert isinstance(data, dict)
    data.setdefault("response", {})
    return data


def _speech(text: str) -> PlainTextOutputSpeech:
    return PlainTextOutputSpeech(text=truncate(text, SPEECH_MAX_CHARS))

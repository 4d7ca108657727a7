"""JSON log lines (``LOG_FORMAT=json``): :class:`JSONFormatter` for stdlib logging.

Every record becomes one JSON object::

    {"event": "task 1f… crashed", "level": "error", "logger": "sessions.execution",
     "timestamp": "2026-11-30T03:40:00.123456Z", "task_id": "1f…", "session_id": "9a…",
     "exception": "Traceback (most recent call last): …"}

``task_id``/``session_id`` (public uuids) come from ``structlog.contextvars``, bound while a task
runs (``sessions.execution.run_claimed_task``); anything else bound there is added too. Secret
masking (``sessions.services.masking``) has already rewritten the record's message and traceback
when the record was created; the traceback is taken from that masked text and masked once more.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger


def _exception(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Render ``exc_info`` as ``exception`` (text), preferring the record's masked ``exc_text``."""
    exc_info = event.pop("exc_info", None)
    if not exc_info:
        return event
    from sessions.services.masking import active_masker

    record = event.get("_record")
    text = getattr(record, "exc_text", None)
    if not text:
        if exc_info is True:
            exc_info = sys.exc_info()
        text = logging.Formatter().formatException(exc_info) if exc_info[0] else ""
    if text:
        event["exception"] = active_masker().mask(text)
    return event


PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _exception,
]


class JSONFormatter(structlog.stdlib.ProcessorFormatter):
    """``ProcessorFormatter`` rendering stdlib records as one JSON object per line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("foreign_pre_chain", PRE_CHAIN)
        kwargs.setdefault(
            "processors",
            [
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(default=str),
            ],
        )
        super().__init__(*args, **kwargs)

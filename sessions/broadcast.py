"""The doorbell: tell subscribers that events were appended (DESIGN §3.2).

One channel-layer message per committed batch, sent after commit. Small batches carry the
envelopes inline; a large batch carries only ``first_seq``/``last_seq`` and subscribers fetch the
rows from the database. The layer is at-most-once, so subscribers also detect gaps by ``seq``
and backfill.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from runtime_project.after_response import after_response

logger = logging.getLogger(__name__)

EXECUTOR_GROUP = "runtime.executor"


def session_group(session_uuid: Any) -> str:
    """Channel-layer group of a session's subscribers (``session.<uuid>``)."""
    return f"session.{session_uuid}"


def events_message(envelopes: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``events.appended`` message for one batch (inline when small, a doorbell otherwise)."""
    message: dict[str, Any] = {
        "type": "events.appended",
        "first_seq": envelopes[0]["seq"],
        "last_seq": envelopes[-1]["seq"],
        "events": None,
    }
    size = len(json.dumps(envelopes, default=str))
    if size <= settings.EVENT_BROADCAST_MAX_BYTES:
        message["events"] = envelopes
    return message


def send_group(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to the channel-layer ``group``; a failed send is logged, not raised."""
    if get_channel_layer() is None:
        return
    try:
        async_to_sync(_send)(group, message)
    except Exception:
        logger.warning("channel layer send to %s failed", group, exc_info=True)


async def _send(group: str, message: dict[str, Any]) -> None:
    """:func:`send_group` on the event loop."""
    try:
        await get_channel_layer().group_send(group, message)
    except Exception:
        # The log is the truth: a lost doorbell is recovered by gap detection and resume.
        logger.warning("channel layer send to %s failed", group, exc_info=True)


def publish_events(session_uuid: Any, envelopes: list[dict[str, Any]]) -> None:
    """Publish a committed batch to the session group (call from ``transaction.on_commit``)."""
    if envelopes:
        send_group(session_group(session_uuid), events_message(envelopes))


def notify_executor(message_type: str, task_uuid: Any) -> None:
    """Wake the executor(s): ``task.queued``, ``task.cancel`` or ``task.debug`` (a debugger
    command is waiting, ``debugger.debugging``) for ``task_uuid``.

    With ``TASK_EXECUTOR=celery`` a queued task becomes a broker message instead
    (``sessions.dispatch``); a cancel also goes to the task's control group, which the process
    running it listens to on whatever machine it is."""
    if message_type == "task.queued" and settings.TASK_EXECUTOR == "celery":
        from sessions.dispatch import dispatch_task

        dispatch_task(task_uuid)
        return
    message = {"type": message_type, "task_id": str(task_uuid)}
    if message_type == "task.queued" and after_response(partial(_send, EXECUTOR_GROUP, message)):
        return  # the request that queued it answers first (runtime_project.after_response)
    send_group(EXECUTOR_GROUP, message)
    if message_type in ("task.cancel", "task.debug"):
        from sessions.dispatch import task_control_group

        send_group(task_control_group(task_uuid), message)

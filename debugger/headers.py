"""Debug routing headers on run-starting requests (issue 10, items 2, 4 and 4b).

One reader, called by every entrypoint that starts a run (REST tasks/messages/oneshot,
``integrations.runs.run_start`` for the OpenAI API, MCP, ChatGPT actions, Alexa and agent
endpoints):

=========================  =========================================================
header                     effect on the new task's ``config``
=========================  =========================================================
``X-MONITOR-ID: <uuid>``   ``monitor_id``: its events are mirrored to
                           ``/ws/monitor/<uuid>/`` (the caller must own the monitor or
                           be a member of its team, else 404 ``monitor_not_found``)
``X-DEBUG-RUN: true``      ``debug: true`` (also ``1``/``yes``; ``false``/``0``/``no``
                           is ``debug: false``)
``X-FORCE-DEBUGGER: true`` ``debug: true`` (and routing: ``runtime_project.modes``)
``X-FORCE-AGENT-RUNNER``   ``debug: false``, winning over every debug request (the body's,
                           ``X-DEBUG-RUN``, the agent's) — a plain run
=========================  =========================================================

The header's ``debug`` overrides the body's; for every other key the body wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime_project.exceptions import InvalidInput

MONITOR_HEADER = "X-Monitor-Id"
DEBUG_HEADER = "X-Debug-Run"
FORCE_DEBUGGER_HEADER = "X-Force-Debugger"
FORCE_AGENT_RUNNER_HEADER = "X-Force-Agent-Runner"

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def header_flag(headers: Mapping[str, str], name: str) -> bool | None:
    """``name``'s value as a boolean: ``True``/``False``, or ``None`` when absent. ``headers``
    is case-insensitive (Django's ``request.headers``, Starlette's) or has lowercase keys.

    Raises:
        InvalidInput: a value that is neither true (``true``, ``1``, ``yes``, ``on``) nor false.
    """
    raw = _get(headers, name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidInput(
        f"The {name} header must be true or false.",
        details={"fields": {name: ["true, false, 1, 0, yes or no"]}},
    )


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def run_config_from_headers(*, headers: Mapping[str, str], user: Any) -> dict[str, Any]:
    """The ``config`` additions the request's debug headers ask for: ``monitor_id`` (the
    monitor's uuid as a string) and ``debug`` (a boolean), each only when a header asks.

    Raises:
        NotFound: ``monitor_not_found`` — ``X-MONITOR-ID`` names a monitor ``user`` may not
            attach runs to (see ``debugger.monitors.monitor_for_run``).
        InvalidInput: a malformed boolean header.
    """
    additions: dict[str, Any] = {}
    monitor_id = (_get(headers, MONITOR_HEADER) or "").strip()
    if monitor_id:
        from debugger.monitors import monitor_for_run  # models: import when used

        additions["monitor_id"] = str(monitor_for_run(user=user, monitor_id=monitor_id).uuid)
    debug = header_flag(headers, DEBUG_HEADER)
    if header_flag(headers, FORCE_DEBUGGER_HEADER):
        debug = True
    if header_flag(headers, FORCE_AGENT_RUNNER_HEADER):
        debug = False  # a plain run, whatever else asked for debugging
    if debug is not None:
        additions["debug"] = debug
    return additions


def run_config_with_headers(
    config: Mapping[str, Any] | None, *, headers: Mapping[str, str], user: Any
) -> dict[str, Any]:
    """``config`` (the request body's) with :func:`run_config_from_headers` applied: the
    headers' ``debug`` replaces the body's (a body's debug *object*, see ``debugger.config``,
    keeps its options with ``enabled`` set to the header's value); ``monitor_id`` is only ever
    the header's (a body cannot attach a run to a monitor without the access check).

    Raises:
        as :func:`run_config_from_headers`.
    """
    merged = dict(config or {})
    merged.pop("monitor_id", None)
    additions = run_config_from_headers(headers=headers, user=user)
    debug = additions.pop("debug", None)
    merged.update(additions)
    if debug is not None:
        body = merged.get("debug")
        # A debug *object* keeps its options (breakpoints, pause timeout); only "enabled" flips.
        merged["debug"] = {**body, "enabled": debug} if isinstance(body, dict) else debug
    return merged

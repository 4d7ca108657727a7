"""The limits in force for a team: its own overrides (``Team.max_running_tasks``,
``Team.max_sandboxes``, ``Team.rate_limit``) or else the server-wide settings
(``TEAM_MAX_RUNNING_TASKS``, ``TEAM_MAX_SANDBOXES``, ``THROTTLE_TEAM``). docs/limits.md.

Conventions, the same for a setting and a team override:

- a count of ``0`` means "no limit" (``None`` on the team means "use the setting");
- a rate is ``"<requests>/<period>"`` with a period of ``s``/``sec``/``second``,
  ``m``/``min``/``minute``, ``h``/``hour`` or ``d``/``day`` (DRF's format); ``"none"`` means no
  limit, an empty team value means "use the setting".
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$", re.I)
UNLIMITED = frozenset({"none", "off", "unlimited"})


def parse_rate(value: str) -> str | None:
    """``value`` normalised for DRF (``"600/min"`` → ``"600/m"``), or ``None`` for no limit.

    Raises:
        ValueError: not ``<n>/<period>`` nor ``none`` (the message is safe to show).
    """
    text = (value or "").strip()
    if text.lower() in UNLIMITED:
        return None
    match = _RATE.match(text)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(
            f"{value!r} is not a rate: use '<requests>/<period>' (period s, min, hour or day, "
            "e.g. '600/min') or 'none'"
        )
    return f"{int(match.group(1))}/{match.group(2)[0].lower()}"


def _count(team: Any, field: str, setting: str) -> int | None:
    own = getattr(team, field, None) if team is not None else None
    value = own if own is not None else int(getattr(settings, setting))
    return value or None


def max_active_tasks(team: Any) -> int | None:
    """Active (queued, running or waiting) top-level tasks ``team`` may have; ``None``: no
    limit."""
    return _count(team, "max_running_tasks", "TEAM_MAX_RUNNING_TASKS")


def max_sandboxes(team: Any) -> int | None:
    """Live sandboxes ``team``'s sessions may have at once; ``None``: no limit."""
    return _count(team, "max_sandboxes", "TEAM_MAX_SANDBOXES")


def team_rate(rate_limit: str) -> str | None:
    """The request rate of a team whose ``rate_limit`` field is ``rate_limit`` (DRF format),
    ``None`` for no limit. A malformed team value (the admin form should not let one through)
    is logged and ignored: the setting applies."""
    if rate_limit and rate_limit.strip():
        try:
            return parse_rate(rate_limit)
        except ValueError:
            logger.warning("ignoring the malformed Team.rate_limit %r", rate_limit)
    return settings.THROTTLE_TEAM

"""Cron expressions and time zones: validation and the next tick, DST-correct (pure functions,
no database).

A schedule's ``cron`` is a standard five-field expression (minute hour day-of-month month
day-of-week, croniter syntax: lists, ranges, steps, month and day names, ``L``, ``#``) or one of
the aliases ``@yearly @annually @monthly @weekly @daily @midnight @hourly``. It is read as wall
clock time in the schedule's IANA time zone. Across daylight-saving changes it follows Vixie
cron:

* spring forward: a wall time the change skips (``30 2 * * *`` on the night 02:00 becomes 03:00)
  fires once, when the gap ends (03:00 local);
* fall back: a *fixed-time* expression (neither the minute nor the hour field starts with ``*``)
  fires once, at the first of the two occurrences of its wall time; a *wildcard* expression
  (``0 * * * *``, ``*/15 * * * *``) follows real time and also fires in the repeated hour.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterError, croniter

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
CRON_MAX_CHARS = 200
# croniter's hashed (H) and random (R) fields: their ticks are not reproducible without a hash
# id, so two schedulers could compute different ticks for one schedule. Letters inside names
# (THU, FRI, MAR) are not matched.
_HASH_OR_RANDOM = re.compile(r"(?<![a-z])[hr](?![a-z])", re.IGNORECASE)
# Host-specific links in the zoneinfo directory: "localtime" is whatever the host is set to.
_NOT_IANA = {"localtime", "posixrules"}
# A fall-back night repeats at most a few ticks of a fixed-time expression; far more than enough.
_MAX_SKIPPED_REPEATS = 1000


def normalize_cron(expr: str) -> str:
    """``expr`` with runs of whitespace collapsed and an alias lower-cased (what is stored)."""
    expr = " ".join(expr.split())
    return expr.lower() if expr.startswith("@") else expr


def _expanded(expr: str) -> str:
    """The five-field form of a normalized expression (aliases replaced)."""
    return ALIASES.get(expr, expr)


def check_cron(expr: Any) -> str:
    """The normalized expression if ``expr`` is a valid five-field cron expression (or alias)
    that fires at least once from now on.

    Raises:
        ValueError: with a message fit for a field error (never the traceback of croniter).
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError("A cron expression is required, e.g. '0 9 * * 1-5'.")
    if len(expr) > CRON_MAX_CHARS:
        raise ValueError(f"The cron expression may not be longer than {CRON_MAX_CHARS} characters.")
    expr = normalize_cron(expr)
    if expr.startswith("@") and expr not in ALIASES:
        raise ValueError(f"Unknown alias {expr!r}; use one of {', '.join(ALIASES)}.")
    five = _expanded(expr)
    if len(five.split()) != 5:
        raise ValueError(
            "A cron expression has exactly five fields: minute hour day-of-month month "
            "day-of-week (seconds and years are not supported)."
        )
    if _HASH_OR_RANDOM.search(five):
        raise ValueError("Hashed (H) and random (R) fields are not supported.")
    try:
        croniter(five, datetime.now(UTC)).get_next(datetime)
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        # croniter raises CroniterBadDateError (a ValueError) for dates that never occur
        # (e.g. "0 0 31 2 *") and CroniterBadCronError for syntax errors.
        raise ValueError(f"Not a valid cron expression: {exc}") from None
    return expr


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # available_timezones() walks the tz database on disk (~0.1 s): once per process.
    return frozenset(available_timezones() - _NOT_IANA)


def check_timezone(name: Any) -> str:
    """``name`` if it is an IANA time zone name known to this host (``UTC``,
    ``Europe/Berlin``, ...).

    Raises:
        ValueError: not a string, or not a known zone name.
    """
    if not isinstance(name, str) or name not in _zone_names():
        raise ValueError(
            f"{name!r} is not an IANA time zone name (e.g. 'UTC', 'Europe/Berlin', "
            "'America/New_York')."
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"The time zone {name!r} cannot be loaded on this server.") from None
    return name


def is_fixed_time(expr: str) -> bool:
    """Vixie cron's distinction: neither the minute nor the hour field is a wildcard (``*``,
    ``*/n``). A fixed-time expression names wall-clock times, each of which fires once a day
    even when a fall-back change repeats it."""
    minute, hour = _expanded(normalize_cron(expr)).split()[:2]
    return not (minute.startswith("*") or hour.startswith("*"))


def next_tick(expr: str, tz_name: str, *, after: datetime) -> datetime:
    """The first tick of ``expr`` in zone ``tz_name`` strictly after ``after``.

    Args:
        expr: a cron expression accepted by :func:`check_cron`.
        tz_name: an IANA zone name accepted by :func:`check_timezone`.
        after: an aware datetime (any zone).

    Returns:
        An aware datetime in UTC, on a whole minute.

    Raises:
        ValueError: ``after`` is naive, or no tick follows (croniter's ``CroniterBadDateError``).
    """
    if after.tzinfo is None:
        raise ValueError("next_tick needs an aware datetime")
    fixed = is_fixed_time(expr)
    ticks = croniter(_expanded(normalize_cron(expr)), after.astimezone(ZoneInfo(tz_name)))
    for _ in range(_MAX_SKIPPED_REPEATS):
        tick: datetime = ticks.get_next(datetime)
        # croniter returns the second occurrence of a repeated wall time with fold=1.
        if fixed and tick.fold:
            continue
        return tick.astimezone(UTC)
    raise ValueError(f"No tick of {expr!r} follows {after.isoformat()}")

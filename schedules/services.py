"""Writes of the schedules app: create, update, delete, and fire (due ticks, or "run now").

Whose schedule
    A schedule belongs to a team (``team``; ``owner`` is the member who created it) and runs an
    agent of that team or a public one. Every run queues its task as the owner, in a session of
    the schedule's team; a run whose owner is no longer a member (or only a viewer) of the team
    queues nothing and records ``schedule_owner_not_member``. Who may call these (a member of
    the team) is checked by the caller (``schedules.selectors.schedule_get(for_write=True)``,
    ``accounts.selectors.team_for_write``).

How a tick fires at most once
    ``schedules_fire_due`` reads the due schedules, then fires each in its own transaction whose
    first statement inserts the ``ScheduleRun`` row ``(schedule, tick)``. Several schedulers may
    run at once (the embedded loop of every server process, Celery beat): they all read the same
    ``next_run_at`` as the tick, and the unique constraint lets exactly one insert succeed. On
    PostgreSQL a concurrent insert waits for the first transaction and then fails with
    ``IntegrityError``; on SQLite transactions are serialized and the later insert fails the same
    way. The loser skips the schedule. The winner queues the task, records it on the run and
    moves ``next_run_at`` on, all in that one transaction, so a crash before the commit leaves
    the tick unfired and due (it fires on the next pass), never fired twice.

Missed ticks are skipped
    After a fire, ``next_run_at`` becomes the first tick *after now*. A scheduler that was down
    over several ticks fires a schedule once when it comes back (for the oldest missed tick,
    the recorded ``next_run_at``) and skips the rest instead of firing them in a burst.

A failing schedule does not stop the others
    Anything that keeps a run from queueing its task (the agent's input schema changed, the
    agent was deleted or made private, ...) is recorded on the run (``error``, the
    ``{"code", "message", "details"}`` of the error) and logged; the schedule still advances.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone as django_tz

from accounts.models import ROLE_RANK, Membership
from accounts.selectors import default_team
from runtime_project.exceptions import ApplicationError, Conflict, Forbidden, InvalidInput
from schedules.cron import check_cron, check_timezone, next_tick
from schedules.models import RunTrigger, Schedule, ScheduleRun, SessionMode
from schedules.selectors import WRITE_ROLE, schedule_agent_get, schedules_due
from sessions.choices import TaskType
from sessions.models import Agent, Session, Task
from sessions.runners import get_runner_class
from sessions.services.sessions import session_create
from sessions.services.tasks import task_create

logger = logging.getLogger(__name__)

NAME_MAX_CHARS = 200
FIRE_BATCH = 500  # schedules fired per pass at most; the rest stay due for the next pass
EDITABLE = ("name", "agent", "cron", "timezone", "input", "config", "session_mode", "enabled")
_TIMING = ("cron", "timezone", "enabled")


# Validation --------------------------------------------------------------------------------------


def _usable_agent(team: Any, agent: Agent) -> Agent:
    """``agent`` re-read, if a schedule of ``team`` may run it (an agent of the team or a
    public one, not deleted).

    Raises:
        NotFound: deleted, or a private agent of another team.
    """
    return schedule_agent_get(team=team, agent_id=agent.uuid)


def _check_owner(schedule: Schedule) -> None:
    """The schedule's owner must still be able to write in its team to have tasks queued.

    Raises:
        Forbidden: ``schedule_owner_not_member``: the owner left the team or is only a
            viewer there now.
    """
    role = (
        Membership.objects.filter(team_id=schedule.team_id, user_id=schedule.owner_id)
        .values_list("role", flat=True)
        .first()
    )
    if role is None or ROLE_RANK[role] < ROLE_RANK[WRITE_ROLE]:
        raise Forbidden(
            "The schedule's owner may no longer start tasks in its team (not a member, or "
            "only a viewer); a member of the team may create the schedule again.",
            code="schedule_owner_not_member",
            details={"owner": schedule.owner.get_username(), "role": role},
        )


def _fields_of(exc: InvalidInput, field: str) -> dict[str, Any]:
    fields = exc.details.get("fields")
    return dict(fields) if isinstance(fields, dict) and fields else {field: [exc.message]}


def schedule_validate(*, agent: Agent, values: dict[str, Any]) -> dict[str, Any]:
    """Check the schedule fields present in ``values`` and return them cleaned (the cron
    expression normalized, the name stripped). ``input`` and ``config`` are checked as the
    agent's runner checks a task's (``input`` against ``agent.input_schema``, or the kind's).

    Args:
        values: any of ``name``, ``cron``, ``timezone``, ``input``, ``config``,
            ``session_mode``, ``enabled``.

    Raises:
        InvalidInput: every invalid field at once, under ``details.fields``
            (``{"cron": ["..."], "input": [{"path", "message"}], ...}``).
    """
    errors: dict[str, Any] = {}
    cleaned: dict[str, Any] = {}
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_MAX_CHARS:
            errors["name"] = [f"A name of 1 to {NAME_MAX_CHARS} characters is required."]
        else:
            cleaned["name"] = name.strip()
    for field, check in (("cron", check_cron), ("timezone", check_timezone)):
        if field in values:
            try:
                cleaned[field] = check(values[field])
            except ValueError as exc:
                errors[field] = [str(exc)]
    if "session_mode" in values:
        if values["session_mode"] in SessionMode.values:
            cleaned["session_mode"] = values["session_mode"]
        else:
            errors["session_mode"] = [f"Must be one of {SessionMode.values}."]
    if "enabled" in values:
        if isinstance(values["enabled"], bool):
            cleaned["enabled"] = values["enabled"]
        else:
            errors["enabled"] = ["Must be true or false."]
    if "input" in values or "config" in values:
        errors.update(_check_task_fields(agent, values, cleaned))
    if errors:
        raise InvalidInput("The schedule is not valid.", details={"fields": errors})
    return cleaned


def _check_task_fields(
    agent: Agent, values: dict[str, Any], cleaned: dict[str, Any]
) -> dict[str, Any]:
    """Field errors of ``input``/``config`` (the valid ones go into ``cleaned``)."""
    try:
        runner = get_runner_class(agent.kind)
    except InvalidInput as exc:
        return {"agent": [exc.message]}
    errors: dict[str, Any] = {}
    if "input" in values:
        data = {} if values["input"] is None else values["input"]
        try:
            if not isinstance(data, dict):
                raise InvalidInput("The input must be a JSON object.")
            runner.validate_input(data, agent.input_schema or None)
            cleaned["input"] = data
        except InvalidInput as exc:
            errors.update(_fields_of(exc, "input"))
    if "config" in values:
        config = {} if values["config"] is None else values["config"]
        try:
            if not isinstance(config, dict):
                raise InvalidInput("The config must be a JSON object.")
            runner.validate_config(config)
            # The rule task_create applies, checked now rather than at every run.
            timeout_s = config.get("timeout_s", settings.TASK_DEFAULT_TIMEOUT_S)
            if (
                isinstance(timeout_s, bool)
                or not isinstance(timeout_s, int | float)
                or not 0 < timeout_s <= settings.TASK_MAX_TIMEOUT_S
            ):
                raise InvalidInput(
                    "config.timeout_s must be a number of seconds in (0, TASK_MAX_TIMEOUT_S].",
                    details={
                        "fields": {"config.timeout_s": [f"max {settings.TASK_MAX_TIMEOUT_S}"]}
                    },
                )
            cleaned["config"] = config
        except InvalidInput as exc:
            errors.update(_fields_of(exc, "config"))
    return errors


def _next_run_at(schedule: Schedule, now: datetime) -> datetime | None:
    """The first tick after ``now`` (UTC), or ``None`` for a disabled schedule."""
    if not schedule.enabled:
        return None
    return next_tick(schedule.cron, schedule.timezone, after=now)


# Create, update, delete --------------------------------------------------------------------------


def schedule_create(
    *,
    owner: Any,
    agent: Agent,
    team: Any | None = None,
    name: str,
    cron: str,
    timezone: str = "UTC",
    input: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    session_mode: str = SessionMode.NEW,
    enabled: bool = True,
) -> Schedule:
    """Create a schedule of ``team`` (default: ``owner``'s default team) on ``agent``, run as
    ``owner``; ``next_run_at`` is its first tick after now (``None`` when created disabled).
    The caller checks that ``owner`` may write in ``team``.

    Raises:
        NotFound: ``agent`` is deleted or a private agent of another team; ``no_team``: no
            ``team`` given and ``owner`` belongs to none.
        InvalidInput: invalid fields, all listed under ``details.fields`` (see
            :func:`schedule_validate`).
    """
    if team is None:
        team = default_team(user=owner)
    agent = _usable_agent(team, agent)
    values = schedule_validate(
        agent=agent,
        values={
            "name": name,
            "cron": cron,
            "timezone": timezone,
            "input": input,
            "config": config,
            "session_mode": session_mode,
            "enabled": enabled,
        },
    )
    schedule = Schedule(owner=owner, team=team, agent=agent, **values)
    schedule.next_run_at = _next_run_at(schedule, django_tz.now())
    schedule.save()
    return schedule


def schedule_update(*, schedule: Schedule, **changes: Any) -> Schedule:
    """Apply ``changes`` (any of ``name``, ``agent``, ``cron``, ``timezone``, ``input``,
    ``config``, ``session_mode``, ``enabled``) and return the schedule as saved.

    Only the changed fields are validated (plus ``input`` and ``config`` when the agent
    changes), so a schedule whose input the agent no longer accepts can still be renamed or
    disabled. A change of ``cron``, ``timezone`` or ``enabled`` recomputes ``next_run_at``
    (the first tick after now; ``None`` when disabled). A new agent, or ``session_mode``
    ``new``, drops the session kept for ``reuse``.

    Raises:
        TypeError: a key that is not editable.
        NotFound: the new agent is deleted or a private agent of another team than the
            schedule's.
        InvalidInput: invalid fields under ``details.fields``.
    """
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise TypeError(f"schedule_update() got fields it cannot change: {sorted(unknown)}")
    with transaction.atomic():
        # Locked so a concurrent run (which saves last_run_at etc.) and this update do not
        # overwrite each other's fields.
        fresh = (
            Schedule.objects.select_for_update(of=("self",))
            .select_related("owner", "team", "agent")
            .get(pk=schedule.pk)
        )
        agent = fresh.agent
        if "agent" in changes:
            agent = _usable_agent(fresh.team_id, changes["agent"])
        values = {key: value for key, value in changes.items() if key != "agent"}
        if "agent" in changes:  # the new agent must accept the input and config too
            values.setdefault("input", fresh.input)
            values.setdefault("config", fresh.config)
        cleaned = schedule_validate(agent=agent, values=values)

        timing_changed = any(
            key in cleaned and cleaned[key] != getattr(fresh, key) for key in _TIMING
        ) or (fresh.enabled and fresh.next_run_at is None)
        agent_changed = agent.pk != fresh.agent_id
        fields = set(cleaned)
        for key, value in cleaned.items():
            setattr(fresh, key, value)
        if "agent" in changes:
            fresh.agent = agent
            fields.add("agent")
        if fresh.session_id and (agent_changed or fresh.session_mode == SessionMode.NEW):
            fresh.session = None
            fields.add("session")
        if timing_changed:
            fresh.next_run_at = _next_run_at(fresh, django_tz.now())
            fields.add("next_run_at")
        fresh.save(update_fields=[*sorted(fields), "updated_at"])
    return fresh


def schedule_delete(*, schedule: Schedule) -> None:
    """Delete the schedule and its run records. The tasks and sessions it created stay."""
    schedule.delete()


# Firing ------------------------------------------------------------------------------------------


def schedules_fire_due(*, now: datetime | None = None, limit: int = FIRE_BATCH) -> list[Task]:
    """Fire every enabled schedule whose ``next_run_at`` is at or before ``now`` (default: the
    current time), at most ``limit`` of them, the most overdue first.

    For each: claim the tick (insert its ``ScheduleRun``; skip the schedule when another
    scheduler already did), queue a ``run`` task with the schedule's input and config, and move
    ``next_run_at`` to the first tick after ``now`` (missed ticks are skipped). Safe to call
    from several processes at once: each tick fires at most once.

    Returns:
        The tasks queued by this call (not those of schedules whose run recorded an error,
        nor those another scheduler fired).

    Never raises for one schedule's failure: it is recorded on the run and logged, and the
    other schedules still fire.
    """
    now = now or django_tz.now()
    tasks: list[Task] = []
    for schedule_id, tick in schedules_due(now=now, limit=limit):
        try:
            run = _fire(schedule_id=schedule_id, tick=tick, now=now, trigger=RunTrigger.CRON)
        except Exception:
            # A database error outside the task's own savepoint; the next pass retries the tick.
            logger.exception("schedule %s: firing the tick %s failed", schedule_id, tick)
            continue
        if run is not None and run.task is not None:
            tasks.append(run.task)
    return tasks


def schedule_fire(*, schedule: Schedule, now: datetime | None = None) -> ScheduleRun:
    """Fire ``schedule`` now, outside its cron ("run now"), even when it is disabled. The run
    is recorded with ``tick`` = ``now`` and trigger ``manual``; ``next_run_at`` does not move.

    Returns:
        The run: its ``task``, or its ``error`` when no task could be queued (the same errors
        a cron run records).

    Raises:
        Conflict: ``schedule_run_conflict``: a run was recorded for the same instant, or the
            schedule was deleted meanwhile.
    """
    now = now or django_tz.now()
    tick = now
    if tick.second == 0 and tick.microsecond == 0:
        # Cron ticks are whole minutes; keeping manual ticks off them means a manual run never
        # takes the (schedule, tick) slot of a cron tick.
        tick += timedelta(microseconds=1)
    run = _fire(schedule_id=schedule.pk, tick=tick, now=now, trigger=RunTrigger.MANUAL)
    if run is None:
        raise Conflict(
            "The schedule could not be run now; try again.",
            code="schedule_run_conflict",
            details={"id": str(schedule.uuid)},
        )
    return run


def _fire(*, schedule_id: int, tick: datetime, now: datetime, trigger: str) -> ScheduleRun | None:
    """Claim ``tick`` of the schedule and queue its task, in one transaction. ``None`` when
    another scheduler claimed the tick, or the schedule changed or went since it was read."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                run = ScheduleRun.objects.create(
                    schedule_id=schedule_id, tick=tick, trigger=trigger
                )
        except IntegrityError:
            # Another scheduler inserted this tick first: it fires it, not us.
            logger.debug("schedule %s: tick %s already claimed", schedule_id, tick.isoformat())
            return None
        schedule = (
            Schedule.objects.select_for_update(of=("self",))
            .select_related("owner", "team", "agent", "session")
            .filter(pk=schedule_id)
            .first()
        )
        if schedule is None or (
            trigger == RunTrigger.CRON and (not schedule.enabled or schedule.next_run_at != tick)
        ):
            # Deleted, disabled or rescheduled between the read of the due list and now.
            transaction.set_rollback(True)
            return None

        task: Task | None = None
        session: Session | None = None
        try:
            with transaction.atomic():  # a failure undoes a session created for the run
                task, session = _queue_task(schedule)
        except ApplicationError as exc:
            run.error = exc.as_dict()["error"]
            logger.warning(
                "schedule %s: no task for the tick %s: %s %s",
                schedule.uuid,
                tick.isoformat(),
                exc.code,
                exc.message,
            )
        except Exception:
            run.error = {
                "code": "internal_error",
                "message": "The server failed to queue the task.",
                "details": {},
            }
            logger.exception("schedule %s: no task for the tick %s", schedule.uuid, tick)
        run.task = task
        run.save(update_fields=["task", "error"])

        fields = ["last_run_at", "updated_at"]
        schedule.last_run_at = now
        if task is not None and session is not None:
            schedule.last_task = task
            fields.append("last_task")
            if schedule.session_mode == SessionMode.REUSE and schedule.session_id != session.pk:
                schedule.session = session
                fields.append("session")
        if trigger == RunTrigger.CRON:
            fields += _advance(schedule, now)
        schedule.save(update_fields=fields)
    return run


def _queue_task(schedule: Schedule) -> tuple[Task, Session]:
    """Queue the schedule's task, as its owner, in its session (created as needed in the
    schedule's team).

    Raises:
        ApplicationError: the owner may no longer write in the team
            (``schedule_owner_not_member``), the agent is no longer usable by the team
            (``not_found``), the input or config no longer valid (``invalid_input``), ...
    """
    _check_owner(schedule)
    agent = _usable_agent(schedule.team_id, schedule.agent)
    # Checked before a session is made for nothing (task_create checks again).
    get_runner_class(agent.kind).validate_input(schedule.input, agent.input_schema or None)
    session = schedule.session if schedule.session_mode == SessionMode.REUSE else None
    if (
        session is None
        or session.deleted_at is not None
        or session.agent_id != agent.pk
        or session.team_id != schedule.team_id
    ):
        session = session_create(
            owner=schedule.owner,
            team=schedule.team,
            agent=agent,
            name=schedule.name,
            metadata={"schedule_id": str(schedule.uuid)},
        )
    task, _ = task_create(
        session=session,
        user=schedule.owner,
        task_type=TaskType.RUN,
        input=schedule.input,
        config=schedule.config,
    )
    return task, session


def _advance(schedule: Schedule, now: datetime) -> list[str]:
    """Move ``next_run_at`` to the first tick after ``now``; returns the fields changed. A
    schedule without a next tick (its zone vanished from the tz database) is disabled."""
    try:
        schedule.next_run_at = next_tick(schedule.cron, schedule.timezone, after=now)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        logger.exception("schedule %s: no next tick; disabling it", schedule.uuid)
        schedule.next_run_at = None
        schedule.enabled = False
        return ["next_run_at", "enabled"]
    return ["next_run_at"]

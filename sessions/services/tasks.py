"""Task writes: create (multitask strategy, idempotency), cancel, retry, and the executor side
(claim with a lease, renew, finish, recover tasks whose worker died).

Every status change appends a ``task.status`` event in the same transaction, so the log always
shows the whole life of a task and ends with its terminal status.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from runtime_project.exceptions import Conflict, InvalidInput
from sessions.broadcast import notify_executor
from sessions.choices import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    MultitaskStrategy,
    OnDisconnect,
    SessionStatus,
    TaskStatus,
)
from sessions.models import Event, Session, Task
from sessions.runners import get_runner_class
from sessions.services.events import event_append, event_task
from sessions.services.limits import task_admit
from sessions.services.locks import lock_session, lock_task
from sessions.services.task_config import task_config_check

logger = logging.getLogger(__name__)


def _status_event(task: Task, **extra: Any) -> Event:
    data = {"status": task.status, "phase": task.current_phase, **extra}
    if task.is_terminal:
        data.update(result=task.result, error=task.error, usage=task.usage)
    return event_append(session=task.session, task=task, type="task.status", data=data)


def task_create(
    *,
    session: Session,
    user: Any,
    task_type: str = "run",
    input: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    multitask_strategy: str = MultitaskStrategy.ENQUEUE,
    on_disconnect: str = OnDisconnect.CONTINUE,
    idempotency_key: str | None = None,
) -> tuple[Task, bool]:
    """Queue a task on ``session``; returns ``(task, created)``.

    With an ``idempotency_key`` already used by ``user``, returns the existing task and
    ``created=False`` (it must be for the same session). ``multitask_strategy`` applies when the
    session already has an active task: ``enqueue`` waits its turn, ``reject`` raises 409,
    ``interrupt`` cancels the active tasks first.

    Raises:
        InvalidInput: input does not match the agent's input schema; bad timeout.
        Conflict: ``reject`` and the session is busy (code ``session_busy``); idempotency key
            reused for another session (code ``idempotency_key_reused``); ``EXCLUSIVE_MODE``
            and a task is active anywhere (code ``server_busy``).
        TooManyRequests: the team has its limit of active tasks (code ``team_task_limit``).
    """
    input = input or {}
    config = config or {}
    if idempotency_key:
        existing = Task.objects.filter(created_by=user, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _idempotent(existing, session), False

    agent = session.agent
    runner_cls = get_runner_class(agent.kind)
    runner_cls.validate_input(input, agent.input_schema or None)
    runner_cls.validate_config(config)
    task_config_check(session=session, user=user, config=config)
    timeout_s = config.get("timeout_s", settings.TASK_DEFAULT_TIMEOUT_S)
    if not isinstance(timeout_s, int | float) or not 0 < timeout_s <= settings.TASK_MAX_TIMEOUT_S:
        raise InvalidInput(
            "config.timeout_s must be a number of seconds in (0, TASK_MAX_TIMEOUT_S].",
            details={"fields": {"config.timeout_s": [f"max {settings.TASK_MAX_TIMEOUT_S}"]}},
        )

    try:
        with transaction.atomic():
            # Lock the session so two concurrent creates see each other (strategy + queue order).
            lock_session(session.pk)
            active = list(Task.objects.filter(session=session, status__in=ACTIVE_STATUSES))
            if active and multitask_strategy == MultitaskStrategy.REJECT:
                raise Conflict(
                    "The session already has an active task.",
                    code="session_busy",
                    details={"active_task_ids": [str(t.uuid) for t in active]},
                )
            if active and multitask_strategy == MultitaskStrategy.INTERRUPT:
                for other in active:
                    task_cancel(task=other, reason="interrupted by a newer task")
            task_admit(session=session, user=user)  # team quota, exclusive mode (limits.py)
            task = Task.objects.create(
                session=session,
                agent=agent,
                agent_version=agent.version,
                created_by=user,
                task_type=task_type,
                input=input,
                config=config,
                multitask_strategy=multitask_strategy,
                on_disconnect=on_disconnect,
                idempotency_key=idempotency_key or None,
                timeout_s=float(timeout_s),
            )
            Session.objects.filter(pk=session.pk).update(status=SessionStatus.ACTIVE)
            queued = _status_event(task, task_type=task_type)
            task.created_envelope = queued.envelope(
                session_uuid=str(session.uuid), task_uuid=str(task.uuid)
            )
            transaction.on_commit(lambda: notify_executor("task.queued", task.uuid))
    except IntegrityError:
        # Two requests with the same idempotency key raced; the other one won.
        existing = Task.objects.filter(created_by=user, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _idempotent(existing, session), False
    return task, True


def _idempotent(existing: Task, session: Session) -> Task:
    if existing.session_id != session.pk:
        raise Conflict(
            "This Idempotency-Key was already used for a task in another session.",
            code="idempotency_key_reused",
            details={"task_id": str(existing.uuid)},
        )
    return existing


def task_phase_project(session: Session, events: list[Any]) -> None:
    """Event projector (``sessions.apps``): a running task's ``current_phase`` follows the
    ``task.status`` events its runner emits (``{"status": "running", "phase"}``), the last of a
    batch winning. A task no longer running keeps the phase its status change set."""
    latest: dict[int, tuple[str, bool]] = {}  # task id: (phase, already saved)
    for event in events:
        data = event.data or {}
        if event.task_id and data.get("status") == TaskStatus.RUNNING and data.get("phase"):
            phase = str(data["phase"])[:64]
            # A service's status event (the claim's ``starting``, a resume) comes with the task
            # it saved in this transaction, phase included: nothing to update.
            task = event_task(event)
            running = (TaskStatus.RUNNING, phase)
            saved = task is not None and (task.status, task.current_phase) == running
            latest[event.task_id] = (phase, saved)
    for task_id, (phase, saved) in latest.items():
        if saved:
            continue
        Task.objects.filter(pk=task_id, status=TaskStatus.RUNNING).exclude(
            current_phase=phase
        ).update(current_phase=phase)


def task_cancel(*, task: Task, reason: str = "cancelled by user") -> Task:
    """Cancel a task. A queued task is cancelled at once; a running one is asked to stop
    (cooperatively, then forcibly after ``TASK_CANCEL_GRACE_S``) and reaches ``cancelled``
    when its executor has stopped it.

    Raises:
        IllegalTransition: the task already finished (409).
    """
    with transaction.atomic():
        task = lock_task(pk=task.pk, session_id=task.session_id)
        parked = task.status == TaskStatus.WAITING and not task.worker
        if task.status == TaskStatus.QUEUED or parked:
            # Nothing runs a queued task, nor a parked one (its runner returned when it paused);
            # a task paused in the debugger still has its worker, which stops it.
            task.pending_action = None
            fields = task.finish(
                TaskStatus.CANCELLED,
                error={"code": "cancelled", "message": reason, "details": {}},
            )
            task.save(update_fields=[*fields, "pending_action"])
            _status_event(task)
            _session_idle_if_done(task.session)
            return task
        if task.is_terminal:
            task.transition(TaskStatus.CANCELLED)  # raises IllegalTransition with the details
        if task.cancel_requested_at is None:
            task.cancel_requested_at = timezone.now()
            task.cancel_reason = reason[:200]
            task.current_phase = "cancelling"
            task.save(
                update_fields=[
                    "cancel_requested_at",
                    "cancel_reason",
                    "current_phase",
                    "updated_at",
                ]
            )
            _status_event(task)
            transaction.on_commit(lambda: notify_executor("task.cancel", task.uuid))
    return task


def task_cancel_all(*, session: Session, reason: str = "cancelled by user") -> list[Task]:
    """Cancel every active task of ``session``; returns them."""
    tasks = list(Task.objects.filter(session=session, status__in=ACTIVE_STATUSES))
    return [task_cancel(task=t, reason=reason) for t in tasks]


def task_retry(*, task: Task, user: Any) -> Task:
    """Queue a new task with the same type, input and config (admin "retry"/"re-run")."""
    new, _ = task_create(
        session=task.session,
        user=user,
        task_type=task.task_type,
        input=task.input,
        config=task.config,
    )
    return new


# Executor side ---------------------------------------------------------------------------------


def task_claim_next(*, worker: str, limit: int, session_id: int | None = None) -> list[Task]:
    """Claim up to ``limit`` queued tasks (oldest first), at most one per session and none in a
    session that already has a running task; each claim is a conditional UPDATE, so two
    workers never run the same task. ``session_id`` restricts the claim to one session.
    Returns the claimed tasks, now ``running``."""
    if limit <= 0:
        return []
    candidates = (
        Task.objects.filter(status=TaskStatus.QUEUED, session__deleted_at__isnull=True)
        .filter(**({"session_id": session_id} if session_id is not None else {}))
        .annotate(session_busy=Exists(_active_in(OuterRef("session"))))
        .filter(session_busy=False)
        .order_by("created_at")
        .values_list("pk", "session_id")[: limit * 4]
    )
    claimed: list[Task] = []
    seen_sessions: set[int] = set()
    for pk, session_id in candidates:
        if len(claimed) >= limit or session_id in seen_sessions:
            continue
        seen_sessions.add(session_id)
        task = _claim_one(pk, session_id, worker)
        if task is not None:
            claimed.append(task)
    return claimed


def _active_in(session: Any) -> Any:
    """The running or waiting tasks of ``session`` (a pk or an ``OuterRef``): while it has
    one, none of its queued tasks may be claimed."""
    return Task.objects.filter(session=session, status__in=[TaskStatus.RUNNING, TaskStatus.WAITING])


def _claim_one(pk: int, session_id: int, worker: str) -> Task | None:
    with transaction.atomic():
        # The session row lock serialises claims within a session across workers.
        lock_session(session_id)
        # Oldest queued task of the session goes first (enqueue order), unless the session has
        # an active one: both read in one statement, under the session's lock.
        task = (
            Task.objects.filter(session_id=session_id, status=TaskStatus.QUEUED)
            .annotate(session_busy=Exists(_active_in(session_id)))
            .select_related("session", "agent")
            .order_by("created_at")
            .first()
        )
        if task is None or task.session_busy:
            return None
        fields = task.mark_running(worker=worker, lease_s=settings.TASK_LEASE_S)
        updated = Task.objects.filter(pk=task.pk, status=TaskStatus.QUEUED).update(
            **{f: getattr(task, f) for f in fields if f != "updated_at"}, updated_at=timezone.now()
        )
        if updated != 1:
            return None
        _status_event(task, attempt=task.attempt, worker=worker)
        return task


def task_unclaim(*, task: Task, worker: str) -> bool:
    """Give back a task ``worker`` claimed but never started (its executor stopped in between):
    ``queued`` again at the same attempt, with a ``task.status`` event saying so. Returns
    whether it was given back (``False`` when it is no longer this worker's claim)."""
    with transaction.atomic():
        locked = lock_task(pk=task.pk, session_id=task.session_id)
        if locked.status != TaskStatus.RUNNING or locked.worker != worker:
            return False
        fields = locked.transition(TaskStatus.QUEUED, phase="requeued")
        locked.attempt = max(locked.attempt - 1, 0)
        locked.lease_expires_at = None
        locked.save(update_fields=[*fields, "attempt", "lease_expires_at"])
        _status_event(locked, reason="worker_stopped")
        transaction.on_commit(partial(notify_executor, "task.queued", locked.uuid))
    return True


def task_renew_lease(*, task: Task, worker: str) -> bool:
    """Extend the lease; returns whether cancellation was requested meanwhile (a safety net
    for a lost ``task.cancel`` notification)."""
    Task.objects.filter(pk=task.pk, worker=worker, status__in=ACTIVE_STATUSES).update(
        lease_expires_at=timezone.now() + timedelta(seconds=settings.TASK_LEASE_S)
    )
    return Task.objects.filter(pk=task.pk, cancel_requested_at__isnull=False).exists()


def task_finish(
    *,
    task: Task,
    status: str,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
) -> Task:
    """Record the outcome and append the terminal ``task.status`` event (once)."""
    with transaction.atomic():
        task = lock_task(pk=task.pk, session_id=task.session_id)
        if task.is_terminal:
            return task
        fields = task.finish(status, result=result, error=error, usage=usage)
        task.save(update_fields=fields)
        _status_event(task)
        _session_idle_if_done(task.session)
    return task


def _session_idle_if_done(session: Session) -> None:
    if not Task.objects.filter(session=session, status__in=ACTIVE_STATUSES).exists():
        Session.objects.filter(pk=session.pk, status=SessionStatus.ACTIVE).update(
            status=SessionStatus.IDLE
        )


def task_release(*, task: Task, code: str, message: str, details: dict[str, Any]) -> Task:
    """Hand back a running task whose worker cannot finish it (lost, or shutting down).

    Requeued (``current_phase`` ``requeued``, the status event carries ``reason=code``) when its
    config or agent spec marks it ``retry_safe``, it has attempts left (``TASK_MAX_ATTEMPTS``) and
    no cancel was requested; otherwise ``failed`` with the error ``code``. A task that is no
    longer running or waiting is returned unchanged. Call inside a transaction holding the row.
    """
    if task.status not in (TaskStatus.RUNNING, TaskStatus.WAITING):
        return task
    # A task released while paused in the debugger no longer waits for anything.
    task.pending_action = None
    retry_safe = bool(task.config.get("retry_safe", task.agent.spec.get("retry_safe", False)))
    if retry_safe and task.attempt < settings.TASK_MAX_ATTEMPTS and not task.cancel_requested_at:
        fields = task.transition(TaskStatus.QUEUED, phase="requeued")
        task.lease_expires_at = None
        task.save(update_fields=[*fields, "lease_expires_at", "pending_action"])
        _status_event(task, reason=code, **details)
        transaction.on_commit(partial(notify_executor, "task.queued", task.uuid))
    else:
        fields = task.finish(
            TaskStatus.FAILED, error={"code": code, "message": message, "details": details}
        )
        task.save(update_fields=[*fields, "pending_action"])
        _status_event(task)
        _session_idle_if_done(task.session)
    return task


def task_release_on_shutdown(*, task: Task, worker: str) -> Task:
    """Release a task its worker stopped because the process is shutting down (code
    ``worker_shutdown``; requeued when retry-safe, see ``task_release``)."""
    with transaction.atomic():
        locked = lock_task(pk=task.pk, session_id=task.session_id, related=("session", "agent"))
        return task_release(
            task=locked,
            code="worker_shutdown",
            message="The worker running this task shut down before it finished.",
            details={"worker": worker, "attempt": locked.attempt},
        )


def task_recover_expired(*, now: Any = None) -> list[Task]:
    """Recover tasks whose worker stopped renewing the lease (crashed or killed): each is
    released (see ``task_release``) with the code ``worker_lost``. Returns the tasks touched."""
    now = now or timezone.now()
    expired = Task.objects.filter(
        status__in=[TaskStatus.RUNNING, TaskStatus.WAITING], lease_expires_at__lt=now
    ).values_list("pk", "session_id")
    touched = []
    for pk, session_id in expired:
        with transaction.atomic():
            task = lock_task(pk=pk, session_id=session_id, related=("session", "agent"))
            if task.status not in (TaskStatus.RUNNING, TaskStatus.WAITING) or (
                task.lease_expires_at and task.lease_expires_at >= now
            ):
                continue
            if task.status == TaskStatus.WAITING and not task.worker:
                # A parked task has no worker: its "lease" is how long it waits for an answer
                # (one paused in the debugger keeps its worker, which renews its lease).
                fields = task.finish(
                    TaskStatus.FAILED,
                    error={"code": "wait_expired",
                           "message": "Nobody answered what the task was waiting for in time.",
                           "details": {"pending_action": task.pending_action}},
                )  # fmt: skip
                task.save(update_fields=fields)
                _status_event(task)
                _session_idle_if_done(task.session)
                touched.append(task)
                continue
            touched.append(
                task_release(
                    task=task,
                    code="worker_lost",
                    message="The worker running this task stopped before it finished.",
                    details={"worker": task.worker, "attempt": task.attempt},
                )
            )
    if touched:
        logger.warning("recovered %d task(s) whose worker was lost", len(touched))
    return touched


def task_is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES

"""Status vocabularies shared by models, services and the API."""

from __future__ import annotations

from django.db import models


class AgentKind(models.TextChoices):
    COMMAND = "command", "Command"
    LLM = "llm", "LLM (tool-calling model)"
    WORKFLOW = "workflow", "Workflow (component graph)"
    PYTHON = "python", "Python (notebook kernel)"
    REMOTE = "remote", "Remote (external runtime)"


class SessionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    IDLE = "idle", "Idle"
    CLOSED = "closed", "Closed"


class TaskStatus(models.TextChoices):
    """DESIGN §2: ``queued → running ⇄ waiting → succeeded | failed | cancelled | timed_out``."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"


TERMINAL_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT}
)
ACTIVE_STATUSES = frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.WAITING})

# Legal moves of the task status machine; anything else raises IllegalTransition (409).
TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED, TaskStatus.FAILED}),
    TaskStatus.RUNNING: frozenset(
        {TaskStatus.WAITING, TaskStatus.QUEUED, *TERMINAL_STATUSES}  # QUEUED = recovered, retried
    ),
    # QUEUED = resumed: the client answered what the task waited for; a worker picks it up again.
    TaskStatus.WAITING: frozenset({TaskStatus.RUNNING, TaskStatus.QUEUED, *TERMINAL_STATUSES}),
}


class TaskType(models.TextChoices):
    RUN = "run", "Run"
    COMPLETE = "complete", "Complete"
    PLAN = "plan", "Plan"
    GENERATE = "generate", "Generate"
    FIX = "fix", "Fix"
    CHAT = "chat", "Chat"
    EXECUTE = "execute", "Execute"


class MultitaskStrategy(models.TextChoices):
    """What to do when a task is created while another one of the session is active
    (LangGraph's ``multitask_strategy``; ``rollback`` is not offered)."""

    ENQUEUE = "enqueue", "Enqueue"
    REJECT = "reject", "Reject"
    INTERRUPT = "interrupt", "Interrupt"


class OnDisconnect(models.TextChoices):
    """For a task created by a streaming request: keep running or cancel when the client goes
    away (LangGraph's ``on_disconnect``)."""

    CONTINUE = "continue", "Continue"
    CANCEL = "cancel", "Cancel"

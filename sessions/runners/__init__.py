"""Registry of agent kinds: ``Agent.kind`` → runner class (imported lazily by dotted path)."""

from __future__ import annotations

import threading
from importlib import import_module

from runtime_project.exceptions import InvalidInput
from sessions.runners.base import Runner, TaskContext, TaskResult

RUNNERS: dict[str, str] = {
    "command": "sessions.runners.command.CommandRunner",
    "llm": "sessions.runners.llm.LlmRunner",
    "remote": "sessions.runners.remote.RemoteRunner",
    "workflow": "sessions.runners.workflow.WorkflowRunner",
    "python": "sessions.runners.python.PythonRunner",
}

# The executor imports every runner in a thread at start while requests may import one too;
# two threads importing the same cycle of modules at once can each see the other's module
# half-initialised ("cannot import name ... partially initialized module"): one at a time.
_IMPORTING = threading.RLock()


def get_runner_class(kind: str) -> type[Runner]:
    """Raises InvalidInput for an unknown kind."""
    path = RUNNERS.get(kind)
    if path is None:
        raise InvalidInput(f"Unknown agent kind {kind!r}.", details={"kinds": sorted(RUNNERS)})
    module, _, name = path.rpartition(".")
    with _IMPORTING:
        cls: type[Runner] = getattr(import_module(module), name)
    return cls


__all__ = ("RUNNERS", "Runner", "TaskContext", "TaskResult", "get_runner_class")

"""Task types → the instructions a coding-agent CLI gets (issue 12).

The workspace convention (created before every run, like OpenHands' and Devin's task folders):
``specs/`` holds what to build (requirements, API descriptions), ``tests/`` the tests that
decide it, ``artifacts/`` what the run produces besides code (plans, reports). A task's
``configuration`` (``instructions``, ``app_url``, ``specs``, ``files``, ``test_command``) fills
the template of its type:

- ``run``: do what the instructions say;
- ``complete``: finish the partial implementation in place (TODOs, stubs), keeping its style;
- ``plan``: answer with a step-by-step plan and change nothing (the CLIs that have a read-only
  mode run in it: ``Architecture.launch``); the server saves the answer as
  ``artifacts/plan.md``;
- ``generate``: create the code the specs describe, with tests;
- ``fix``: make the failing tests pass by fixing the code, not the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

WORKSPACE_DIRS = ("specs", "tests", "artifacts")
PLAN_FILE = "artifacts/plan.md"

_GOALS = {
    "run": "Carry out the instructions below in this workspace.",
    "complete": (
        "Complete the partial implementation in this workspace: fill in the stubs, TODOs and "
        "missing pieces in place, keeping the existing structure, names and style."
    ),
    "plan": (
        "Plan the work only: read what you need, change no file and run nothing that "
        "modifies the workspace, then answer with a numbered, step-by-step plan (files to "
        f"change, how, and how to test it). Your answer is saved as `{PLAN_FILE}`."
    ),
    "generate": (
        "Generate the code the specification describes, with tests for it, in this "
        "workspace. Create files as needed."
    ),
    "fix": (
        "The tests fail. Find the cause and fix the code so that they pass. Change the tests "
        "only if they are clearly wrong, and say so."
    ),
}


@dataclass(frozen=True)
class Configuration:
    """A task's ``configuration`` (the ``input.configuration`` object, with ``input.instructions``
    as the default instructions).

    Attributes:
        instructions: free text from the user.
        app_url: the running application the task is about (given as context, not fetched
            by the server).
        specs: workspace paths to read first (default: every file under ``specs/``).
        files: workspace paths the task is about (read and, except for ``plan``, edit).
        test_command: how to run the tests (default ``spec.test_command``).
    """

    instructions: str = ""
    app_url: str = ""
    specs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    test_command: str = ""


def build_prompt(task_type: str, config: Configuration, *, spec_files: Iterable[str] = ()) -> str:
    """The whole prompt of a run: the task type's goal, the instructions, then the context
    (app URL, specs, files, test command, the workspace folders). ``spec_files``: the
    workspace's ``specs/`` files, used when ``config.specs`` is empty."""
    parts = [_GOALS.get(task_type, _GOALS["run"])]
    if config.instructions.strip():
        parts.append("Instructions:\n" + config.instructions.strip())
    context = []
    if config.app_url:
        context.append(f"- The application is running at {config.app_url}")
    specs = list(config.specs) or sorted(spec_files)
    if specs:
        context.append("- Read these specifications first: " + ", ".join(specs))
    if config.files:
        context.append("- The task concerns these files: " + ", ".join(config.files))
    if config.test_command:
        verb = "Check your plan against" if task_type == "plan" else "Run the tests with"
        context.append(f"- {verb}: `{config.test_command}`")
    context.append(
        "- Workspace folders: specs/ (requirements), tests/ (tests), artifacts/ (put reports "
        "and other outputs that are not code here)."
    )
    parts.append("Context:\n" + "\n".join(context))
    if task_type != "plan":
        parts.append("When you are done, say briefly what you changed and how you checked it.")
    return "\n\n".join(parts)

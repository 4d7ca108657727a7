"""The demo agents seeded on first start of the embedded default: ``shell``, ``pytest`` and
``demo-llm`` (the llm loop with a scripted stand-in for the model)."""

from __future__ import annotations

from typing import Any

from sessions.models import Agent
from sessions.services.agents import agent_create

# Runs a project's own test suite. The project is input.cwd, else the workspace root, else the
# single top-level directory of an extracted sdist. Test requirements files found in the project
# are installed into the sandbox's /tmp with the toolchain's pip: from wheels uploaded to the
# workspace (.agent/wheels, or the project's wheelhouse/ or wheels/) with no network, else from
# the package index when the agent's spec grants network ("network": "host"). Without either,
# the read-only toolchain (pytest) and the project's own source are used, and the log says so.
PYTEST_SCRIPT = r"""
set -u
args=("$@")
if [ "$(pwd)" = /workspace ] && [ ! -e pyproject.toml ] && [ ! -e setup.py ] && [ ! -e setup.cfg ]; then
  dirs=(*/)
  if [ "${#dirs[@]}" -eq 1 ] && [ -d "${dirs[0]}" ]; then cd "${dirs[0]}"; fi
fi
echo "project: $(pwd | sed 's|^/workspace|.|')"
export PYTHONPATH="${AGENT_TOOLCHAIN:-}:$(pwd)/src:$(pwd)"
reqs=()
for f in requirements-test.txt test-requirements.txt requirements_test.txt requirements-tests.txt requirements-dev.txt requirements/test.txt requirements/tests.txt; do
  if [ -f "$f" ]; then reqs+=(-r "$f"); fi
done
wheels=""
for d in /workspace/.agent/wheels wheelhouse wheels; do
  if [ -d "$d" ]; then wheels="$d"; break; fi
done
if [ "${#reqs[@]}" -gt 0 ]; then
  pip=(python3 -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-warn-script-location --target /tmp/deps)
  if [ -n "$wheels" ]; then
    echo "installing test requirements from $wheels (no index): ${reqs[*]}"
    "${pip[@]}" --no-index --find-links "$wheels" "${reqs[@]}" || { echo "could not install the test requirements from $wheels" >&2; exit 3; }
  elif [ "${AGENT_NETWORK:-none}" = "host" ]; then
    echo "installing test requirements from the package index: ${reqs[*]}"
    "${pip[@]}" "${reqs[@]}" || { echo "could not install the test requirements" >&2; exit 3; }
  else
    echo "test requirements found (${reqs[*]}) but the sandbox has no network and the workspace no .agent/wheels: running with the toolchain only" >&2
  fi
  if [ -d /tmp/deps ]; then export PYTHONPATH="/tmp/deps:$PYTHONPATH"; fi
fi
exec python3 -m pytest -p no:cacheprovider -o addopts="" \
  --junitxml=/workspace/.agent/junit.xml -q "${args[@]}"
"""

DEMO_AGENTS: list[dict[str, Any]] = [
    {
        "slug": "shell",
        "name": "Shell",
        "kind": "command",
        "description": "Runs the task's `command` (a bash script) or `argv` in the session sandbox.",
        "spec": {"allow_input_command": True},
        "input_schema": {},
    },
    {
        "slug": "pytest",
        "name": "pytest",
        "kind": "command",
        "description": (
            "Runs the workspace project's test suite with pytest and reports passed/failed/"
            "skipped counts from its JUnit XML. Test requirements files are installed first "
            "from wheels uploaded to `.agent/wheels` (or from the index when the agent's spec "
            "grants network). Extra pytest arguments go in `input.args`."
        ),
        "spec": {
            "allow_input_command": False,
            "templates": {"run": PYTEST_SCRIPT, "fix": PYTEST_SCRIPT},
            "result": {"junit_xml": ".agent/junit.xml"},
            "retry_safe": True,
        },
        "input_schema": {
            "type": "object",
            "properties": {
                "args": {"type": "array", "items": {"type": "string"}},
                "cwd": {"type": "string"},
            },
            "additionalProperties": False,
        },
    },
    {
        "slug": "demo-llm",
        "name": "Demo LLM (scripted, no model)",
        "kind": "llm",
        "description": (
            "The llm agent loop with a scripted stand-in for the model, so it works with no key: "
            "replies stream token by token; `$ <command>` runs a shell command in the sandbox, "
            "`ls` and `cat <file>` use the workspace tools, `ask <question>` pauses the task for "
            "your answer. Point an agent of kind llm at a real endpoint for real answers."
        ),
        "spec": {
            "model": {"provider": "scripted", "name": "scripted-demo"},
            "system_prompt": "You are the demo agent.",
            "tools": ["shell", "list_files", "read_file", "write_file", "ask_user"],
            "max_steps": 4,
        },
        "input_schema": {},
    },
]


def seed_demo_agents(*, owner: Any) -> list[Agent]:
    """Create the demo agents (public, owned by ``owner``) that do not exist yet."""
    created = []
    for item in DEMO_AGENTS:
        if not Agent.objects.filter(
            owner=owner, slug=item["slug"], deleted_at__isnull=True
        ).exists():
            created.append(agent_create(owner=owner, is_public=True, **item))
    return created

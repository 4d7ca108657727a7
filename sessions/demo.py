"""The demo agents seeded on first start of the embedded default: ``shell`` and ``pytest``."""

from __future__ import annotations

from typing import Any

from sessions.models import Agent
from sessions.services.agents import agent_create

# Runs a project's own test suite. The project is input.cwd, else the workspace root, else the
# single top-level directory of an extracted sdist. Test requirements are installed
# into /tmp when the sandbox has network (spec.network = "host"); otherwise the read-only
# toolchain (pytest) and the project's own source are used.
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
for f in requirements-test.txt test-requirements.txt requirements_test.txt requirements-dev.txt requirements/test.txt requirements/tests.txt; do
  if [ -f "$f" ]; then reqs+=(-r "$f"); fi
done
if [ "${#reqs[@]}" -gt 0 ]; then
  if [ "${AGENT_NETWORK:-none}" = "host" ]; then
    echo "installing test requirements: ${reqs[*]}"
    python3 -m pip install --quiet --disable-pip-version-check --target /tmp/deps "${reqs[@]}" \
      && export PYTHONPATH="/tmp/deps:$PYTHONPATH"
  else
    echo "test requirements found (${reqs[*]}) but the sandbox has no network: using the toolchain" >&2
  fi
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
            "skipped counts from its JUnit XML. Extra pytest arguments go in `input.args`."
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

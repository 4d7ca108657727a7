#!/usr/bin/env bash
# Run the test suite with the locked virtualenv: `scripts/test.sh [pytest args...]`.
#
# `make test` runs scripts/setup.sh first; this wrapper does not, so it stays cheap to call. It
# exists so that pytest's exit code 5 ("no tests collected") is reported as the failure it is: a
# mistyped -k/path or a broken collection must never look like a green run.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

[[ -x .venv/bin/pytest ]] || { echo "test: .venv/bin/pytest missing; run scripts/setup.sh (or make test)" >&2; exit 1; }

# The project's own bytecode too (the virtualenv's is compiled by setup): the test suite starts
# many server processes, and PYTHONDONTWRITEBYTECODE would make each compile every module again.
.venv/bin/python -m compileall -q -j 0 -x '/(\.venv|node_modules|var)/' . >/dev/null || true

status=0
.venv/bin/pytest "$@" || status=$?

if [[ $status -eq 5 ]]; then
  echo "test: FAILED: pytest collected no tests (exit 5); check the selection (PYTEST_ARGS) and collection errors" >&2
fi
exit "$status"

"""The executor fixture of tests/execution, for the run-time refusal tests."""

from tests.execution.conftest import executor  # noqa: F401

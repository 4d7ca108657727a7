"""Settings of metrics and log format (``observability/``, docs/observability.md); imported at
the end of ``runtime_project.settings``."""

from __future__ import annotations

import os
from typing import Any

from runtime_project.envvars import boolean, choice

# Serve GET /metrics (Prometheus text format); false: 404.
METRICS_ENABLED = boolean("METRICS_ENABLED", True)
# Bearer token required by GET /metrics; empty: only direct loopback/private clients are served.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
# Log line format: plain text, or one JSON object per line (with task_id/session_id in a run).
LOG_FORMAT = choice("LOG_FORMAT", "plain", {"plain", "json"})


def with_log_format(logging_config: dict[str, Any]) -> dict[str, Any]:
    """``logging_config`` with a ``json`` formatter added and the console handler using
    ``LOG_FORMAT`` (the formatter class is imported only when logging is configured)."""
    logging_config["formatters"]["json"] = {"()": "observability.logs.JSONFormatter"}
    logging_config["handlers"]["console"]["formatter"] = LOG_FORMAT
    return logging_config

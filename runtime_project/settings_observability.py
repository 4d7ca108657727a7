"""Settings of metrics, log format, OpenTelemetry spans and the analytics export
(``observability/``, docs/observability.md); imported at the end of ``runtime_project.settings``."""

from __future__ import annotations

import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from runtime_project.envvars import boolean, choice, count, typed

# Serve GET /metrics (Prometheus text format); false: 404.
METRICS_ENABLED = boolean("METRICS_ENABLED", True)
# Bearer token required by GET /metrics; empty: only direct loopback/private clients are served.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
# Log line format: plain text, or one JSON object per line (with task_id/session_id in a run).
LOG_FORMAT = choice("LOG_FORMAT", "plain", {"plain", "json"})

# OpenTelemetry spans of finished tasks (observability/tracing.py). The standard variables:
# either endpoint set turns it on (the traces one is used as is, the other gets /v1/traces);
# OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION and OTEL_RESOURCE_ATTRIBUTES are read by
# the SDK itself. OTEL_SDK_DISABLED=true turns it off whatever the endpoints say.
OTEL_EXPORTER_OTLP_ENDPOINT = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = os.environ.get(
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""
).strip()
OTEL_SERVICE_NAME = os.environ.get("OTEL_SERVICE_NAME", "").strip() or "agent-runtime"
OTEL_SDK_DISABLED = boolean("OTEL_SDK_DISABLED", False)

# Analytics export (observability/analytics.py): selected events POSTed in JSON batches.
# Empty URL: off. The URL passes the outbound guard (private addresses refused unless
# ANALYTICS_ALLOW_PRIVATE). The token is sent as "Authorization: Bearer", never logged.
ANALYTICS_EXPORT_URL = os.environ.get("ANALYTICS_EXPORT_URL", "").strip()
ANALYTICS_EXPORT_TOKEN = os.environ.get("ANALYTICS_EXPORT_TOKEN", "").strip()
ANALYTICS_EVENT_TYPES = tuple(
    t.strip()
    for t in (
        os.environ.get("ANALYTICS_EVENT_TYPES") or "task.status,usage,error,tool.call,tool.result"
    ).split(",")
    if t.strip()
)
ANALYTICS_BATCH_SIZE = max(count("ANALYTICS_BATCH_SIZE", 100), 1)  # events per POST
ANALYTICS_FLUSH_INTERVAL_S = float(typed("ANALYTICS_FLUSH_INTERVAL_S", float, 2.0))
ANALYTICS_QUEUE_MAX = max(count("ANALYTICS_QUEUE_MAX", 10_000), 1)  # overflow drops the oldest
ANALYTICS_ALLOW_PRIVATE = boolean("ANALYTICS_ALLOW_PRIVATE", False)
ANALYTICS_MAX_ATTEMPTS = max(count("ANALYTICS_MAX_ATTEMPTS", 5), 1)  # per batch, then dropped
ANALYTICS_RETRY_BASE_S = float(typed("ANALYTICS_RETRY_BASE_S", float, 1.0))  # doubles per try
ANALYTICS_TIMEOUT_S = float(typed("ANALYTICS_TIMEOUT_S", float, 10.0))  # per POST
for _name in ("ANALYTICS_FLUSH_INTERVAL_S", "ANALYTICS_TIMEOUT_S"):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be more than 0")
if ANALYTICS_RETRY_BASE_S < 0:
    raise ImproperlyConfigured("ANALYTICS_RETRY_BASE_S must be 0 or more")


def with_log_format(logging_config: dict[str, Any]) -> dict[str, Any]:
    """``logging_config`` with a ``json`` formatter added and the console handler using
    ``LOG_FORMAT`` (the formatter class is imported only when logging is configured)."""
    logging_config["formatters"]["json"] = {"()": "observability.logs.JSONFormatter"}
    logging_config["handlers"]["console"]["formatter"] = LOG_FORMAT
    return logging_config

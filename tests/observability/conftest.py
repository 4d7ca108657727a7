"""Fixtures of the export tests: the executor fixtures of tests/execution, receivers, and
tracing/analytics (re)configured from the test's settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from observability import analytics, tracing
from tests.execution.conftest import executor, owner  # noqa: F401
from tests.observability.receivers import Receiver, serve


@pytest.fixture
def collector() -> Iterator[Receiver]:
    """An HTTP receiver answering 200 (set ``collector.answers`` to script other answers)."""
    yield from serve()


@pytest.fixture
def otlp(settings: Any, collector: Receiver) -> Iterator[Receiver]:
    """Tracing on, exporting to ``collector`` (OTEL_EXPORTER_OTLP_ENDPOINT); off afterwards."""
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = collector.url
    settings.OTEL_SERVICE_NAME = "runtime-under-test"
    assert tracing.configure()
    yield collector
    tracing.shutdown()


@pytest.fixture
def export_to(settings: Any) -> Iterator[Any]:
    """``export_to(url, **ANALYTICS_* overrides)``: the analytics export on, to ``url``; off
    (stopped, its queue dropped) after the test."""

    def start(url: str, **overrides: Any) -> analytics.Exporter:
        settings.ANALYTICS_EXPORT_URL = url
        settings.ANALYTICS_FLUSH_INTERVAL_S = 60.0  # batches are sent by exporter.flush()
        settings.ANALYTICS_RETRY_BASE_S = 0.05
        for name, value in overrides.items():
            setattr(settings, f"ANALYTICS_{name.upper()}", value)
        assert analytics.configure()
        current = analytics.exporter()
        assert current is not None
        return current

    yield start
    analytics.shutdown()

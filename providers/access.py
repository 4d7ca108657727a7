"""Team model access (issue 10, item 6): which models a team may use."""

from __future__ import annotations

from typing import Any


def task_model_check(*, session: Any, user: Any, config: dict[str, Any]) -> None:
    """Placeholder until team model access lands: every model is allowed."""
    return None

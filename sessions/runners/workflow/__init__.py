"""The ``workflow`` agent kind (DESIGN §5): see :mod:`sessions.runners.workflow.runner`."""

from sessions.runners.workflow.runner import WorkflowRunner

__all__ = ("WorkflowRunner",)

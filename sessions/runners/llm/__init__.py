"""The ``llm`` agent kind (DESIGN §5): see :mod:`sessions.runners.llm.runner`."""

from sessions.runners.llm.runner import LlmRunner

__all__ = ("LlmRunner",)

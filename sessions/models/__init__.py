from sessions.models.agent import Agent, AgentVersion
from sessions.models.artifact import Artifact
from sessions.models.event import Event
from sessions.models.session import Session
from sessions.models.share import ShareLink
from sessions.models.task import IllegalTransition, Task

__all__ = (
    "Agent",
    "AgentVersion",
    "Artifact",
    "Event",
    "IllegalTransition",
    "Session",
    "ShareLink",
    "Task",
)

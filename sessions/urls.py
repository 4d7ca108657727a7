"""``/api/v1/`` routes of the sessions app (included by ``runtime_project.urls``).

Ids are matched as plain strings: the selectors answer 404 in the error shape for anything
that is not a known UUID (a ``<uuid:>`` converter would give Django's HTML 404 instead).
"""

from __future__ import annotations

from django.urls import path

from sandboxes.apis import (
    ProcessKillApi,
    ProcessListApi,
    ProcessOutputApi,
    ProcessStdinApi,
    SandboxDetailApi,
    SandboxExecApi,
    SandboxStartApi,
    SandboxStopApi,
)
from sandboxes.apis_snapshots import SnapshotListApi, SnapshotRestoreApi
from sessions.apis.agents import (
    AgentCreateApi,
    AgentDeleteApi,
    AgentDetailApi,
    AgentListApi,
    AgentUpdateApi,
    AgentVersionListApi,
)
from sessions.apis.artifacts import (
    ArtifactContentApi,
    ArtifactDeleteApi,
    ArtifactDetailApi,
    SessionArtifactListApi,
    TaskArtifactListApi,
)
from sessions.apis.copy import SessionCopyApi
from sessions.apis.events import SessionEventListApi, TaskEventListApi
from sessions.apis.messages import MessageCreateApi, MessageListApi
from sessions.apis.oneshot import oneshot_view
from sessions.apis.routing import route
from sessions.apis.sessions import (
    SessionCancelApi,
    SessionCreateApi,
    SessionDeleteApi,
    SessionDetailApi,
    SessionListApi,
    SessionRestoreApi,
    SessionUpdateApi,
)
from sessions.apis.tasks import (
    TaskCancelApi,
    TaskCreateApi,
    TaskDetailApi,
    TaskListApi,
    TaskResultApi,
    TaskResumeApi,
)
from sessions.apis.workspace import (
    WorkspaceFileDeleteApi,
    WorkspaceFileDownloadApi,
    WorkspaceFileListApi,
    WorkspaceFilePutApi,
    WorkspaceFileUploadApi,
)
from sessions.streaming import SessionEventStreamApi, TaskEventStreamApi

app_name = "sessions_api"

agent_patterns = [
    path("agents", route(get=AgentListApi, post=AgentCreateApi), name="agents"),
    path(
        "agents/<str:agent_id>",
        route(get=AgentDetailApi, patch=AgentUpdateApi, delete=AgentDeleteApi),
        name="agent-detail",
    ),
    path("agents/<str:agent_id>/versions", AgentVersionListApi.as_view(), name="agent-versions"),
]

session_patterns = [
    path("sessions", route(get=SessionListApi, post=SessionCreateApi), name="sessions"),
    path(
        "sessions/<str:session_id>",
        route(get=SessionDetailApi, patch=SessionUpdateApi, delete=SessionDeleteApi),
        name="session-detail",
    ),
    path("sessions/<str:session_id>/copy", SessionCopyApi.as_view(), name="session-copy"),
    path(
        "sessions/<str:session_id>/restore",
        SessionRestoreApi.as_view(),
        name="session-restore",
    ),
    path(
        "sessions/<str:session_id>/messages",
        route(get=MessageListApi, post=MessageCreateApi),
        name="session-messages",
    ),
    path("sessions/<str:session_id>/cancel", SessionCancelApi.as_view(), name="session-cancel"),
    path(
        "sessions/<str:session_id>/tasks",
        route(get=TaskListApi, post=TaskCreateApi),
        name="session-tasks",
    ),
    path(
        "sessions/<str:session_id>/events",
        SessionEventListApi.as_view(),
        name="session-events",
    ),
    # The SSE streams are async Django views (DRF has none); runtime_project.schema documents
    # them.
    path(
        "sessions/<str:session_id>/events/stream",
        SessionEventStreamApi,
        name="session-events-stream",
    ),
    path(
        "sessions/<str:session_id>/workspace/files",
        route(get=WorkspaceFileListApi, post=WorkspaceFileUploadApi),
        name="workspace-files",
    ),
    path(
        "sessions/<str:session_id>/workspace/files/<path:file_path>",
        route(get=WorkspaceFileDownloadApi, put=WorkspaceFilePutApi, delete=WorkspaceFileDeleteApi),
        name="workspace-file",
    ),
]

sandbox_patterns = [
    path(
        "sessions/<str:session_id>/sandbox",
        SandboxDetailApi.as_view(),
        name="sandbox",
    ),
    path(
        "sessions/<str:session_id>/sandbox/start", SandboxStartApi.as_view(), name="sandbox-start"
    ),
    path("sessions/<str:session_id>/sandbox/stop", SandboxStopApi.as_view(), name="sandbox-stop"),
    path("sessions/<str:session_id>/sandbox/exec", SandboxExecApi.as_view(), name="sandbox-exec"),
    path(
        "sessions/<str:session_id>/sandbox/processes",
        ProcessListApi.as_view(),
        name="sandbox-processes",
    ),
    path(
        "sessions/<str:session_id>/sandbox/snapshots",
        SnapshotListApi.as_view(),
        name="sandbox-snapshots",
    ),
    path(
        "sessions/<str:session_id>/sandbox/snapshots/<str:name>/restore",
        SnapshotRestoreApi.as_view(),
        name="sandbox-snapshot-restore",
    ),
    path(
        "sessions/<str:session_id>/sandbox/processes/<str:process_id>/output",
        ProcessOutputApi.as_view(),
        name="sandbox-process-output",
    ),
    path(
        "sessions/<str:session_id>/sandbox/processes/<str:process_id>/stdin",
        ProcessStdinApi.as_view(),
        name="sandbox-process-stdin",
    ),
    path(
        "sessions/<str:session_id>/sandbox/processes/<str:process_id>/kill",
        ProcessKillApi.as_view(),
        name="sandbox-process-kill",
    ),
]

task_patterns = [
    path("tasks/<str:task_id>", TaskDetailApi.as_view(), name="task-detail"),
    path("tasks/<str:task_id>/cancel", TaskCancelApi.as_view(), name="task-cancel"),
    path("tasks/<str:task_id>/resume", TaskResumeApi.as_view(), name="task-resume"),
    path("tasks/<str:task_id>/events", TaskEventListApi.as_view(), name="task-events"),
    path("tasks/<str:task_id>/stream", TaskEventStreamApi, name="task-stream"),
    path("tasks/<str:task_id>/result", TaskResultApi.as_view(), name="task-result"),
    path("tasks/<str:task_id>/artifacts", TaskArtifactListApi.as_view(), name="task-artifacts"),
    path("oneshot", oneshot_view, name="oneshot"),
]

artifact_patterns = [
    path(
        "sessions/<str:session_id>/artifacts",
        SessionArtifactListApi.as_view(),
        name="session-artifacts",
    ),
    path(
        "artifacts/<str:artifact_id>",
        route(get=ArtifactDetailApi, delete=ArtifactDeleteApi),
        name="artifact-detail",
    ),
    path(
        "artifacts/<str:artifact_id>/content",
        ArtifactContentApi.as_view(),
        name="artifact-content",
    ),
]

urlpatterns = [
    *agent_patterns,
    *session_patterns,
    *sandbox_patterns,
    *task_patterns,
    *artifact_patterns,
]

from __future__ import annotations

from django.urls import path

from debugger.apis import TaskStepListApi
from debugger.debug_apis import (
    AgentBreakpointCreateApi,
    AgentBreakpointDeleteApi,
    AgentBreakpointListApi,
    TaskBreakpointCreateApi,
    TaskBreakpointDeleteApi,
    TaskBreakpointListApi,
    TaskDebugApi,
    TaskDebugCommandApi,
    TaskPauseApi,
)
from debugger.monitor_apis import (
    MonitorCreateApi,
    MonitorDeleteApi,
    MonitorDetailApi,
    MonitorListApi,
    MonitorTaskListApi,
)
from debugger.replay_apis import TaskForkApi, TaskForkListApi
from sessions.apis.routing import route

urlpatterns = [
    path("tasks/<str:task_id>/steps", TaskStepListApi.as_view(), name="task-steps"),
    path("tasks/<str:task_id>/debug", TaskDebugApi.as_view(), name="task-debug"),
    path(
        "tasks/<str:task_id>/debug/breakpoints",
        route(get=TaskBreakpointListApi, post=TaskBreakpointCreateApi),
        name="task-breakpoints",
    ),
    path(
        "tasks/<str:task_id>/debug/breakpoints/<str:breakpoint_id>",
        route(delete=TaskBreakpointDeleteApi),
        name="task-breakpoint-detail",
    ),
    path(
        "tasks/<str:task_id>/debug/<str:action>",
        TaskDebugCommandApi.as_view(),
        name="task-debug-command",
    ),
    path("tasks/<str:task_id>/pause", TaskPauseApi.as_view(), name="task-pause"),
    path(
        "agents/<str:agent_id>/breakpoints",
        route(get=AgentBreakpointListApi, post=AgentBreakpointCreateApi),
        name="agent-breakpoints",
    ),
    path(
        "agents/<str:agent_id>/breakpoints/<str:agent_breakpoint_id>",
        route(delete=AgentBreakpointDeleteApi),
        name="agent-breakpoint-detail",
    ),
    path("monitors", route(get=MonitorListApi, post=MonitorCreateApi), name="monitors"),
    path(
        "monitors/<str:monitor_id>",
        route(get=MonitorDetailApi, delete=MonitorDeleteApi),
        name="monitor-detail",
    ),
    path("monitors/<str:monitor_id>/tasks", MonitorTaskListApi.as_view(), name="monitor-tasks"),
    path("tasks/<str:task_id>/fork", TaskForkApi.as_view(), name="task-fork"),
    path("tasks/<str:task_id>/forks", TaskForkListApi.as_view(), name="task-forks"),
]

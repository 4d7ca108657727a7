"""``/api/v1/`` routes of the schedules app (included by ``runtime_project.urls``).

Ids are plain strings: the selectors answer 404 in the error shape for anything else.
"""

from __future__ import annotations

from django.urls import path

from schedules.apis import (
    ScheduleCreateApi,
    ScheduleDeleteApi,
    ScheduleDetailApi,
    ScheduleFireApi,
    ScheduleListApi,
    ScheduleRunListApi,
    ScheduleUpdateApi,
)
from sessions.apis.routing import route

app_name = "schedules_api"

urlpatterns = [
    path("schedules", route(get=ScheduleListApi, post=ScheduleCreateApi), name="schedules"),
    path(
        "schedules/<str:schedule_id>",
        route(get=ScheduleDetailApi, patch=ScheduleUpdateApi, delete=ScheduleDeleteApi),
        name="schedule-detail",
    ),
    path(
        "schedules/<str:schedule_id>/runs",
        route(get=ScheduleRunListApi),
        name="schedule-runs",
    ),
    path("schedules/<str:schedule_id>/run", route(post=ScheduleFireApi), name="schedule-run"),
]

from __future__ import annotations

from django.urls import path

from debugger.apis import TaskStepListApi

urlpatterns = [
    path("tasks/<str:task_id>/steps", TaskStepListApi.as_view(), name="task-steps"),
]

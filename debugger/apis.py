"""The trace endpoint: ``GET /api/v1/tasks/{task_id}/steps``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import writes
from accounts.models import Scope
from debugger import selectors as step_selectors
from debugger.models import Step, StepKind, StepStatus
from runtime_project.api import error_responses
from sessions import selectors
from sessions.apis.common import TASK_ID, validated_query


class StepOutputSerializer(serializers.ModelSerializer):
    """One step. ``input``/``output``/``error`` are JSON; a large value is
    ``{"artifact": {"id", "name", "size", "content_type"}, "preview"}`` (fetch it from
    ``/api/v1/artifacts/{id}/content``)."""

    id = serializers.UUIDField(source="uuid", read_only=True)
    parent_step_id = serializers.SerializerMethodField(
        help_text="The parent's `step_id`; null for the root."
    )
    kind = serializers.ChoiceField(choices=StepKind.choices)
    status = serializers.ChoiceField(choices=StepStatus.choices)
    duration_ms = serializers.IntegerField(allow_null=True, help_text="Milliseconds.")
    cost_usd = serializers.FloatField(allow_null=True, help_text="US dollars, when known.")

    class Meta:
        model = Step
        ref_name = "Step"
        fields: tuple[str, ...] = (
            "id", "step_id", "parent_step_id", "kind", "name", "status", "input", "output",
            "error", "metadata", "started_at", "finished_at", "duration_ms", "prompt_tokens",
            "completion_tokens", "cost_usd", "seq_started", "seq_finished",
        )  # fmt: skip
        read_only_fields: tuple[str, ...] = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_parent_step_id(self, step: Step) -> str | None:
        return step.parent.step_id if step.parent is not None else None


class _ChildrenField(serializers.ListField):
    """A step's ``tree_children`` (set by ``step_selectors.step_tree``) as step nodes. Not
    read-only, so the schema leaves it optional: the ``flat=true`` list has no ``children``."""

    def to_representation(self, data: Any) -> list[Any]:
        return [StepNodeSerializer(child).data for child in data]


class StepNodeSerializer(StepOutputSerializer):
    """A step with its child steps, ordered by start."""

    children = _ChildrenField(
        source="tree_children",
        child=serializers.DictField(),
        required=False,
        help_text="The child steps (step nodes), ordered by start; absent with `flat=true`.",
    )

    class Meta(StepOutputSerializer.Meta):
        ref_name = "StepNode"
        fields = (*StepOutputSerializer.Meta.fields, "children")
        read_only_fields = StepOutputSerializer.Meta.fields


class StepTreeSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    count = serializers.IntegerField(help_text="How many steps the task has.")
    steps = StepNodeSerializer(
        many=True, help_text="The tree's top-level steps (the `agent` root), or every step "
        "without `children` with `flat=true`."
    )  # fmt: skip

    class Meta:
        ref_name = "StepTree"


class StepQuerySerializer(serializers.Serializer):
    flat = serializers.BooleanField(
        default=False, help_text="A flat list ordered by start instead of the tree."
    )

    class Meta:
        ref_name = "StepQuery"


class TaskStepListApi(APIView):
    required_scope = Scope.SESSIONS_READ

    @extend_schema(
        operation_id="tasks_steps_list",
        summary="Read a task's step trace",
        description=(
            "The steps the run recorded (model calls, tool calls, workflow components, cells, "
            "commands) as a tree under one `agent` root, with inputs, outputs, status, timing, "
            "tokens and cost. Live updates arrive as the task's events "
            "(`step.*`, `cell.*`, `process.*`, `tool.*`); the trace is their projection."
        ),
        parameters=[
            TASK_ID,
            OpenApiParameter("flat", bool, description="A flat list ordered by start."),
        ],
        responses={200: StepTreeSerializer, **error_responses(400, 404)},
        tags=["tasks"],
    )
    def get(self, request: Request, task_id: str) -> Response:
        task = selectors.task_get(user=request.user, task_id=task_id, for_write=writes(request))
        query = validated_query(StepQuerySerializer, request)
        if query["flat"]:
            flat = step_selectors.step_list(task=task)
            steps = StepOutputSerializer(flat, many=True).data
            count = len(flat)
        else:
            roots = step_selectors.step_tree(task=task)
            steps = StepNodeSerializer(roots, many=True).data
            count = _count(roots)
        return Response({"task_id": str(task.uuid), "count": count, "steps": steps})


def _count(nodes: list[Step]) -> int:
    total = 0
    for node in nodes:
        children: list[Step] = node.tree_children  # type: ignore[attr-defined]
        total += 1 + _count(children)
    return total

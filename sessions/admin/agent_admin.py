"""Agents in the admin: the list, the change page with its version history, and a diff
between two versions (``<pk>/diff/?a=<version>&b=<version>``). A spec, kind or input schema
changed here goes through ``agent_update`` like an API change: it is validated, bumps the
version and records it, so the history and the diff cover admin edits too."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from accounts.audit import AuditedAdmin
from runtime_project.exceptions import ApplicationError
from sessions.admin.common import ReadOnlyInline, preview
from sessions.models import Agent, AgentVersion
from sessions.runners import get_runner_class
from sessions.runners.base import validate_json_schema
from sessions.services.agents import agent_update

VERSIONED = ("kind", "spec", "input_schema")
DIFF_CONTEXT_LINES = 3


def version_document(version: AgentVersion) -> list[str]:
    """The lines compared by the diff: kind, description, spec and input schema as sorted,
    indented JSON (so a changed key shows as the lines that hold it)."""
    document = {
        "kind": version.kind,
        "description": version.description,
        "spec": version.spec,
        "input_schema": version.input_schema,
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def version_diff(a: AgentVersion, b: AgentVersion) -> list[tuple[str, str]]:
    """A unified diff from ``a`` to ``b`` as ``(kind, line)`` pairs, ``kind`` one of
    ``header``, ``hunk``, ``add``, ``remove``, ``same``; empty when they are equal."""
    lines = difflib.unified_diff(
        version_document(a), version_document(b), fromfile=f"version {a.version}",
        tofile=f"version {b.version}", lineterm="", n=DIFF_CONTEXT_LINES,
    )  # fmt: skip
    out = []
    for line in lines:
        if line.startswith(("---", "+++")):
            kind = "header"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "add", "-": "remove"}.get(line[:1], "same")
        out.append((kind, line))
    return out


class AgentVersionInline(ReadOnlyInline):
    model = AgentVersion
    fields = ("version", "kind", "spec_preview", "created_by", "created_at", "changes")
    readonly_fields = fields
    ordering = ("-version",)
    show_change_link = False

    @admin.display(description="spec")
    def spec_preview(self, obj: AgentVersion) -> str:
        return preview(obj.spec)

    @admin.display(description="diff")
    def changes(self, obj: AgentVersion) -> str:
        if obj.pk is None or (obj.version or 0) <= 1:
            return "—"
        url = reverse("admin:agent_sessions_agent_diff", args=[obj.agent_id])
        return format_html(
            '<a href="{}?a={}&amp;b={}">changes from version {}</a>',
            url, obj.version - 1, obj.version, obj.version - 1,
        )  # fmt: skip


class AgentAdminForm(forms.ModelForm):
    """Checks a spec and input schema as the API does (the kind's spec schema; a valid JSON
    Schema), so a bad edit is a form error rather than a broken agent."""

    class Meta:
        model = Agent
        fields = (
            "slug", "name", "kind", "description", "spec", "input_schema", "owner", "team",
            "is_public", "endpoints", "integrations", "deleted_at",
        )  # fmt: skip

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, spec = data.get("kind"), data.get("spec")
        try:
            if kind and isinstance(spec, dict):
                get_runner_class(kind).validate_spec(spec)
            if data.get("input_schema"):
                validate_json_schema(data["input_schema"])
        except ApplicationError as exc:
            fields = (exc.details or {}).get("fields") or {}
            problems = [f"{k}: {'; '.join(map(str, v))}" for k, v in fields.items()]
            raise forms.ValidationError(" ".join([exc.message, *problems])) from None
        return data


@admin.register(Agent)
class AgentAdmin(AuditedAdmin):
    form = AgentAdminForm
    change_form_template = "admin/agent_sessions/agent/change_form.html"
    list_display = ("slug", "name", "kind", "version", "team", "owner", "is_public", "deleted_at")
    list_filter = ("kind", "is_public")
    list_select_related = ("owner", "team")
    search_fields = ("slug", "name", "uuid", "owner__username", "team__slug")
    date_hierarchy = "created_at"
    readonly_fields = ("uuid", "version", "created_at", "updated_at")
    raw_id_fields = ("owner", "team")
    inlines = (AgentVersionInline,)

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        versioned = [f for f in VERSIONED if f in form.changed_data]
        if change and versioned:
            updated = agent_update(
                agent=obj, user=request.user, **{f: form.cleaned_data[f] for f in versioned}
            )
            obj.version = updated.version
        super().save_model(request, obj, form, change)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/diff/",
                self.admin_site.admin_view(self.diff_view),
                name="agent_sessions_agent_diff",
            ),
            *super().get_urls(),
        ]

    def diff_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET ``<pk>/diff/?a=<version>&b=<version>``: a unified diff of two versions (default:
        the newest and the one before it)."""
        agent = self.get_object(request, object_id)
        if agent is None:
            raise Http404("No such agent.")
        if not self.has_view_permission(request, agent):
            raise PermissionDenied
        numbers = list(
            AgentVersion.objects.filter(agent=agent)
            .order_by("-version")
            .values_list("version", flat=True)
        )
        error = ""
        try:
            b = int(request.GET.get("b") or (numbers[0] if numbers else agent.version))
            a = int(request.GET.get("a") or next((n for n in numbers if n < b), b))
        except ValueError:
            a = b = agent.version
            error = "Versions are whole numbers."
        rows = {v.version: v for v in AgentVersion.objects.filter(agent=agent, version__in={a, b})}
        missing = [n for n in (a, b) if n not in rows]
        if missing and not error:
            error = f"This agent has no version {missing[0]}."
        lines = [] if error else version_diff(rows[a], rows[b])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": agent,
            "title": f"Changes of {agent.slug}",
            "subtitle": f"version {a} → {b}",
            "versions": numbers,
            "a": a,
            "b": b,
            "lines": lines,
            "error": error,
            "change_url": reverse("admin:agent_sessions_agent_change", args=[agent.pk]),
        }
        status = 400 if error else 200
        return TemplateResponse(
            request, "admin/agent_sessions/agent/diff.html", context, status=status
        )

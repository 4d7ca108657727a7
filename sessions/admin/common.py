"""Pieces the operator admin pages share: read-only inlines, "latest N rows" inline formsets,
short JSON previews, and the JSON answers of the admin's own endpoints."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse

PREVIEW_CHARS = 200


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """``value`` as compact JSON (strings as they are), cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ReadOnlyInline(admin.TabularInline):
    """An inline that shows rows and never adds, changes or deletes them."""

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def latest_formset(order_field: str, limit: int) -> type[BaseInlineFormSet]:
    """An inline formset showing only the newest ``limit`` rows by ``order_field``, oldest
    first (a session can hold hundreds of thousands of events)."""

    class LatestFormSet(BaseInlineFormSet):
        def get_queryset(self) -> QuerySet[Any]:
            if not hasattr(self, "_latest"):
                assert self.queryset is not None
                newest = self.queryset.order_by(f"-{order_field}").values_list("pk", flat=True)
                ids = list(newest[:limit])
                self._latest = self.queryset.filter(pk__in=ids).order_by(order_field)
            return self._latest

    return LatestFormSet


def wants_json(request: HttpRequest) -> bool:
    """Whether the caller is the page's script (``Accept: application/json``) rather than a
    plain form submission (which gets a redirect and a flash message)."""
    return "application/json" in request.headers.get("Accept", "")


def json_error(status: int, code: str, message: str, **details: Any) -> JsonResponse:
    """``{"error": {"code", "message", "details"}}`` with HTTP ``status``."""
    return JsonResponse(
        {"error": {"code": code, "message": message, "details": details}}, status=status
    )


def action_done(
    request: HttpRequest,
    *,
    message: str,
    level: int,
    back_to: str,
    redirect: str | None = None,
) -> HttpResponse:
    """The answer to an object-tool button. A form submission is redirected (to ``redirect``,
    else ``back_to``) with ``message`` flashed; the page's script gets
    ``{"message", "level", "redirect"}`` and shows the message in place (flashed as well when
    it navigates away)."""
    if not wants_json(request):
        messages.add_message(request, level, message)
        return HttpResponseRedirect(redirect or back_to)
    if redirect:
        messages.add_message(request, level, message)
    tag = messages.DEFAULT_TAGS.get(level, "info")
    return JsonResponse({"message": message, "level": tag, "redirect": redirect})

"""The API keys page (``/console/api-keys/``): the keys the user can see, and the forms that
``api-keys.js`` sends to ``POST /api/v1/api-keys`` (create; the key is shown once) and
``DELETE /api/v1/api-keys/{id}`` (revoke)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views import View

from accounts.models import ApiKey, Scope
from accounts.selectors import api_key_list, team_list
from console.views.base import ConsoleLoginRequired, console_render

PAGE_SIZE = 25


def key_status(key: ApiKey) -> str:
    """``revoked``, ``expired`` or ``active``: whether the key still works (as far as its own
    dates go; its user's roles apply on top)."""
    if key.revoked_at is not None:
        return "revoked"
    return "expired" if key.is_expired else "active"


class ApiKeysPage(ConsoleLoginRequired, View):
    """The user's keys and the team keys of teams they administer, newest first, 25 a page;
    never the key itself (only its prefix). ``page`` is 1-based."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        page = Paginator(api_key_list(user=request.user), PAGE_SIZE).get_page(
            request.GET.get("page")
        )
        rows: list[dict[str, Any]] = [
            {"key": key, "status": key_status(key), "mine": key.user_id == request.user.pk}
            for key in page.object_list
        ]
        context = {
            "nav": "api-keys",
            "page": page,
            "rows": rows,
            "scopes": Scope.choices,
            "teams": list(team_list(user=request.user).order_by("-is_personal", "name")),
            "min_expiry": (timezone.localdate() + dt.timedelta(days=1)).isoformat(),
        }
        config = {
            "api": "/api/v1/api-keys",
            "username": request.user.get_username(),
            "example_url": request.build_absolute_uri("/api/v1/sessions"),
        }
        return console_render(request, "console/api_keys.html", context, config=config)

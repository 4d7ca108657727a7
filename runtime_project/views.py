"""JSON error pages for non-DRF paths, so no client ever gets an HTML stack trace."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from runtime_project.exceptions import error_body


def not_found(request: HttpRequest, exception: Any = None) -> JsonResponse:
    return JsonResponse(
        error_body("not_found", "No such endpoint.", {"path": request.path}), status=404
    )


def server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        error_body("internal_error", "The server failed to handle this request."), status=500
    )

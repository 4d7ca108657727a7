"""One error tree for the whole server, and the DRF handler that renders it.

Every error a client can see has the shape ``{"error": {"code", "message", "details"}}`` with the
HTTP status of the exception class (the HackSoft Django-Styleguide ``ApplicationError`` idea, with
the code/message/details envelope most public APIs use). Nothing else ever reaches a client: an
unexpected exception becomes a 500 ``internal_error`` without a traceback (it is logged instead).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """Base of every error the server raises on purpose.

    Args:
        message: human-readable, safe to show to the caller (never a secret or a path on the host).
        details: JSON-serialisable extra information (field errors, limits, ids).
        code: overrides the class ``code`` (snake_case).
    """

    status_code: int = status.HTTP_400_BAD_REQUEST
    code: str = "bad_request"

    def __init__(
        self, message: str, *, details: dict[str, Any] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code

    def as_dict(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"code", "message", "details"}}``."""
        return error_body(self.code, self.message, self.details)


class InvalidInput(ApplicationError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid_input"


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Forbidden(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class Conflict(ApplicationError):
    """The request is valid but the object's state does not allow it (e.g. illegal transition)."""

    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class TooManyRequests(ApplicationError):
    """A quota or rate is exhausted; retry later (429 with a ``Retry-After`` header).

    Args:
        retry_after_s: seconds the caller should wait before retrying (rounded up to whole
            seconds, at least 1); sent as ``Retry-After`` and as ``details.retry_after_s``.
    """

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "too_many_requests"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float = 1,
        details: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(
            message, details={**(details or {}), "retry_after_s": self.retry_after_s}, code=code
        )


class PayloadTooLarge(ApplicationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"


class ServiceUnavailable(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"


class OutboundRefused(ApplicationError):
    """An outbound request made on a user's behalf names an address the server will not reach
    (loopback, private, link-local, ...; ``runtime_project/outbound.py``). Details:
    ``{"host", "address", "reason"}``."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "outbound_refused"


class OutboundFailed(ApplicationError):
    """An allowed outbound request did not complete: timeout, connection or TLS failure, too many
    redirects. Details: ``{"host", "reason"}``."""

    status_code = status.HTTP_502_BAD_GATEWAY
    code = "outbound_failed"


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the error envelope used by REST, SSE, WebSocket error frames and events."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


_DRF_CODES: dict[type[Exception], str] = {
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "forbidden",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.ParseError: "parse_error",
    drf_exceptions.ValidationError: "invalid_input",
}


def _drf_code(exc: drf_exceptions.APIException) -> str:
    explicit = getattr(exc, "error_code", None)
    if explicit:
        return str(explicit)
    for cls, code in _DRF_CODES.items():
        if isinstance(exc, cls):
            return code
    return str(getattr(exc, "default_code", "error"))


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: render every error as the envelope, never a traceback."""
    if isinstance(exc, ApplicationError):
        retry_after = getattr(exc, "retry_after_s", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return Response(exc.as_dict(), status=exc.status_code, headers=headers)
    if isinstance(exc, DjangoValidationError):
        fields = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        return Response(
            error_body("invalid_input", "The request is not valid.", {"fields": fields}),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is unreachable (restarting, failing over): a retryable 503, not a 500.
        # The driver's message (never the query's parameters) tells a locked SQLite file from
        # an unreachable server.
        logger.warning("database unavailable: %s: %s", type(exc).__name__, str(exc)[:200])
        return Response(
            error_body("database_unavailable", "The database is unavailable; retry shortly."),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = drf_default_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__)
        return Response(
            error_body("internal_error", "The server failed to handle this request."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    assert isinstance(exc, drf_exceptions.APIException)
    code = _drf_code(exc)
    if isinstance(exc, drf_exceptions.ValidationError):
        message = "The request is not valid."
        details: dict[str, Any] = {"fields": response.data}
    else:
        detail = exc.detail
        message = str(detail) if not isinstance(detail, list | dict) else str(exc.default_detail)
        details = {}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, drf_exceptions.Throttled) and wait is not None:
            details["retry_after_s"] = wait
    response.data = error_body(code, str(message), details)
    return response

"""The HTTP edge of the OpenAI-compatible API: OpenAI-shaped errors, bearer authentication with
scopes and rate limits, JSON bodies, and the wrapper every ``/v1`` view runs in.

Errors on ``/v1`` never use the server's own envelope: they are OpenAI's
``{"error": {"message", "type", "param", "code"}}`` (what the ``openai`` SDKs parse into
``AuthenticationError``, ``NotFoundError``, ``BadRequestError``, ``RateLimitError``...), with
the status of the failure. Every refusal about the outcome of a task carries
``x-should-retry: false``, so an SDK does not silently run the agent again.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from accounts import access
from runtime_project.exceptions import ApplicationError

logger = logging.getLogger(__name__)

# OpenAI's error ``type`` per status (its "Error codes" guide); others are server errors.
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "requests",
}


class OpenAIError(Exception):
    """An error answered in OpenAI's shape.

    Args:
        status: the HTTP status.
        message: safe to show (never a credential or a host path).
        code: OpenAI-style code (``invalid_api_key``, ``model_not_found``...) or ours.
        param: the request field at fault (``messages[2].content``), if any.
        type: OpenAI's error type; default from ``status``.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``...).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPES.get(status, "server_error")
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self, extra_headers: dict[str, str] | None = None) -> JsonResponse:
        return JsonResponse(
            self.body(), status=self.status, headers={**self.headers, **(extra_headers or {})}
        )


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    """A 400 ``invalid_request_error`` about ``param``."""
    return OpenAIError(400, message, param=param, code=code)


def _param_of(details: dict[str, Any]) -> str | None:
    fields = details.get("fields")
    if isinstance(fields, dict) and fields:
        return str(next(iter(fields)))
    return None


def from_application_error(exc: ApplicationError) -> OpenAIError:
    """Our error tree in OpenAI's shape (same status; our code kept as ``code``)."""
    status, code, headers = exc.status_code, exc.code, {}
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    message = exc.message
    problems = (exc.details.get("fields") or {}) if isinstance(exc.details, dict) else {}
    if status == 400 and problems:  # name the first problem: the message alone is vague
        first = next(iter(problems.values()))
        if isinstance(first, list) and first:
            item = first[0]
            detail = item.get("message", "") if isinstance(item, dict) else str(item)
            path = item.get("path", "") if isinstance(item, dict) else ""
            message = f"{message} {path + ': ' if path else ''}{detail}".strip()
    if status in (409, 502, 503, 504):
        headers["x-should-retry"] = "false"  # a conflict or a run outcome: retrying re-runs
    if status == 429 and code == "throttled":
        code = "rate_limit_exceeded"
    return OpenAIError(
        status, message, code=code, param=_param_of(exc.details or {}), headers=headers
    )


def authenticate(request: HttpRequest, scope: str) -> Any:
    """The user of the request's ``Authorization: Bearer <API key or OAuth2 token>``, with the
    credential's scopes bound, checked for ``scope`` and counted against the REST API's rate
    limits (per credential and per team). Sync (database).

    Raises:
        OpenAIError: 401 ``invalid_api_key`` (missing, unknown, revoked or expired
            credential), 403 ``insufficient_scope``, 429 ``rate_limit_exceeded``.
    """
    from accounts.authentication import CredentialError, resolve_bearer
    from runtime_project.auth import bearer_challenge
    from runtime_project.throttling import (
        CredentialRateThrottle,
        TeamRateThrottle,
        retry_after_s,
    )

    challenge = {"WWW-Authenticate": bearer_challenge(request)}
    parts = request.headers.get("Authorization", "").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise OpenAIError(
            401,
            "You didn't provide an API key. Send it in an Authorization header using Bearer "
            "auth (Authorization: Bearer YOUR_KEY): an API key or an OAuth2 access token.",
            code="invalid_api_key",
            headers=challenge,
        )
    try:
        user = resolve_bearer(parts[1]).user
    except CredentialError as exc:
        raise OpenAIError(401, exc.message, code="invalid_api_key", headers=challenge) from None
    if not access.has_scope(user, scope):
        raise OpenAIError(
            403,
            f"This credential lacks the '{scope}' scope.",
            code="insufficient_scope",
            param=None,
        )
    shim = SimpleNamespace(user=user, META=request.META)
    for throttle in (CredentialRateThrottle(), TeamRateThrottle()):
        if not throttle.allow_request(shim, None):
            wait = retry_after_s(throttle)
            raise OpenAIError(
                429,
                f"Rate limit reached; retry in {wait} s.",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(wait)},
            )
    return user


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object.

    Raises:
        OpenAIError: 400 when the body is not a JSON object.
    """
    try:
        data = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        raise invalid(
            "We could not parse the JSON body of your request. The body must be a JSON object."
        ) from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.")
    return data


View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def openai_view(*methods: str) -> Callable[[View], View]:
    """Wrap an async view of ``/v1``: CSRF-exempt (bearer-only API), other methods answer 405,
    and every exception becomes an OpenAI-shaped error (an unexpected one a logged 500
    ``server_error`` without details)."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                allowed = ", ".join(methods)
                return OpenAIError(
                    405,
                    f"Method {request.method} is not allowed here; use {allowed}.",
                    code="method_not_allowed",
                    headers={"Allow": allowed},
                ).response()
            try:
                return await view(request, *args, **kwargs)
            except OpenAIError as exc:
                return exc.response()
            except ApplicationError as exc:
                return from_application_error(exc).response()
            except (OperationalError, InterfaceError):
                logger.warning("database unavailable on %s", request.path)
                return OpenAIError(
                    503,
                    "The database is unavailable; retry shortly.",
                    code="service_unavailable",
                    headers={"Retry-After": "5"},
                ).response()
            except Exception:
                logger.exception("unhandled error on %s", request.path)
                return OpenAIError(
                    500, "The server failed to handle this request.", code="internal_error"
                ).response()

        return csrf_exempt(wrapped)

    return decorate


@openai_view("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
async def unknown_route(request: HttpRequest, rest: str = "") -> HttpResponseBase:
    """Any other ``/v1/...`` path: OpenAI's 404 ``unknown_url``."""
    raise OpenAIError(
        404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url"
    )

"""The REST side: a small synchronous client of ``/api/v1/`` and its error envelope.

Every failure a user can meet becomes an :class:`ApiError` with one readable line: the
server's ``{"error": {"code", "message", "details"}}`` (DESIGN §7), or a connection problem
(``connection_refused``, ``timeout``…) with a hint. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from runtime_cli.config import Config

USER_AGENT = "agent-runtime-cli/1"
PAGE_LIMIT = 500  # the server's max_limit for list endpoints


class ApiError(Exception):
    """An error answer of the server, or no answer at all (``status`` is then None)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}

    def line(self) -> str:
        """One line for the terminal, e.g. ``Invalid API key or access token. (invalid_credential,
        HTTP 401)``; validation errors name their fields."""
        # A connection problem has no code worth showing; a server's answer has.
        text = self.message.rstrip()
        if self.status:
            text += f" ({self.code}, HTTP {self.status})"
        fields = self.details.get("fields")
        if isinstance(fields, dict) and fields:
            parts = []
            for name, problems in fields.items():
                listed = problems if isinstance(problems, list) else [problems]
                parts += [_problem(str(name), p) for p in listed]
            text += " — " + ", ".join(parts)
        elif scope := self.details.get("required_scope"):
            text += f" — the key needs the {scope} scope"
        return text


def _problem(name: str, problem: Any) -> str:
    """``field: message``; schema errors come as ``{"path", "message"}`` inside the field."""
    if isinstance(problem, dict):
        path = problem.get("path")
        where = f"{name}.{path}" if path not in (None, "") else name
        return f"{where}: {problem.get('message', problem)}"
    return f"{name}: {problem}"


def error_from_response(response: httpx.Response) -> ApiError:
    """The :class:`ApiError` for a non-2xx ``response`` (body read if streamed)."""
    try:
        response.read()
        body = response.json()
        error = body["error"]
        return ApiError(
            str(error.get("code") or "error"),
            str(error.get("message") or response.reason_phrase),
            status=response.status_code,
            details=error.get("details") if isinstance(error.get("details"), dict) else {},
        )
    except (ValueError, KeyError, TypeError, AttributeError, httpx.HTTPError):
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        message = text or response.reason_phrase or "The server answered with an error."
        return ApiError("http_error", message, status=response.status_code)


def connection_error(exc: Exception, url: str) -> ApiError:
    """An :class:`ApiError` for a transport failure (nothing or no valid answer came back)."""
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc) or "connection failed"
        if "refused" in reason.lower() or "111" in reason:
            return ApiError(
                "connection_refused",
                f"Cannot connect to {url}: connection refused. Is the server running? "
                "Set --url or RUNTIME_URL.",
            )
        return ApiError("connection_failed", f"Cannot connect to {url}: {reason}.")
    if isinstance(exc, httpx.TimeoutException):
        return ApiError("timeout", f"{url} did not answer in time.")
    return ApiError("connection_failed", f"The connection to {url} failed: {exc or type(exc)}.")


def path_quote(path: str) -> str:
    """A workspace path for a URL: each segment percent-encoded, the ``/`` kept."""
    return quote(path.strip("/"), safe="/")


class Api:
    """Thin wrapper over ``httpx.Client`` for one server and key; use as a context manager."""

    def __init__(self, config: Config, *, timeout: float = 60) -> None:
        self.config = config
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self.http = httpx.Client(base_url=config.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; a 2xx response is returned, anything else raises ApiError."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise connection_error(exc, self.config.url) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    def get(self, path: str, /, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=body, **kwargs)
        return response.json() if response.content else {}

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def list_all(self, path: str, /, *, limit: int | None = None, **params: Any) -> list[Any]:
        """Every item of a paginated list (``{"count", "next", "results"}``), at most ``limit``."""
        items: list[Any] = []
        offset = 0
        while limit is None or len(items) < limit:
            page_size = PAGE_LIMIT if limit is None else min(PAGE_LIMIT, limit - len(items))
            page = self.get(path, limit=page_size, offset=offset, **params)
            results = page.get("results", [])
            items.extend(results)
            offset += len(results)
            if not page.get("next") or not results:
                break
        return items

    def events(self, task_id: str, *, after: int = 0) -> Iterator[dict[str, Any]]:
        """The task's stored events after ``after``, oldest first (paged, 1000 at a time)."""
        while True:
            page = self.get(f"/api/v1/tasks/{task_id}/events", after=after, limit=1000)
            yield from page["events"]
            if not page["events"]:
                return
            after = page["next_after"]

    def upload(
        self, session_id: str, remote: str, source: BinaryIO, *, size: int, extract: bool
    ) -> Any:
        """PUT the ``size`` bytes of ``source`` as the workspace file ``remote`` (streamed, with
        a Content-Length so the server can refuse an oversized file before reading it)."""
        params = {"extract": "true"} if extract else {}
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        url = f"/api/v1/sessions/{session_id}/workspace/files/{path_quote(remote)}"
        return self.request("PUT", url, content=_chunks(source), params=params,
                            headers=headers).json()  # fmt: skip

    def download(self, session_id: str, remote: str, target: BinaryIO) -> int:
        """Write the workspace file ``remote`` into ``target``; returns the byte count.

        Raises:
            ApiError: ``is_a_directory`` when ``remote`` is a directory, or the server's error.
        """
        url = f"/api/v1/sessions/{session_id}/workspace/files/{path_quote(remote)}"
        try:
            with self.http.stream("GET", url, headers={"Accept": "*/*"}) as response:
                if response.is_error:
                    raise error_from_response(response)
                if "attachment" not in response.headers.get("Content-Disposition", ""):
                    # The server answers a directory with its listing (JSON), not a file.
                    raise ApiError("is_a_directory", f"{remote} is a directory in the workspace.")
                size = 0
                for chunk in response.iter_bytes():
                    target.write(chunk)
                    size += len(chunk)
                return size
        except httpx.HTTPError as exc:
            raise connection_error(exc, self.config.url) from exc


def _chunks(source: BinaryIO, size: int = 64 * 1024) -> Iterator[bytes]:
    while chunk := source.read(size):
        yield chunk

"""Static files served by the server process itself (daphne serves none): the admin's CSS, the
browser runtime's scripts and the Pyodide distribution vendored from npm
(``STATICFILES_DIRS``, docs/browser-runtime.md).

:class:`StaticFilesMiddleware` is WhiteNoise's middleware made sync and async capable:
WhiteNoise's own is sync-only, which would force Django's async middleware chain (async views,
SSE above all) through a thread, and under ASGI its file responses are sync iterators that
Django buffers whole with a warning. This one answers static URLs with an async file stream in
either chain (``runtime_project.handlers``) and hands every other request straight on.

Files are found through the staticfiles finders at start-up (``WHITENOISE_USE_FINDERS``), so no
``collectstatic`` step is needed; with ``DEBUG`` they are looked up per request instead. The
scan (a few thousand files with the Pyodide distribution, about 15 ms) is done once per process
and settings: every handler a process builds (the one-hop handler, the stock one, a test
client's) shares the file table, as one handler would.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

CHUNK_BYTES = 256 * 1024

# The browser runtime's worker runs users' Python (docs/browser-runtime.md): it may load scripts
# from this server and read static files, nothing else. With the page's user's cookies it could
# otherwise call the API as that user. COEP lets the cross-origin-isolated page start it.
WORKER_SCRIPT = "runtimes/pyodide-worker.js"


def worker_csp() -> str:
    static_path = urlsplit(settings.STATIC_URL or "/static/").path
    return f"default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src *:*{static_path}"


def add_headers(headers: Any, path: str, url: str) -> None:
    """WhiteNoise's per-file header hook."""
    if url.endswith("/" + WORKER_SCRIPT):
        headers["Content-Security-Policy"] = worker_csp()
        headers["Cross-Origin-Embedder-Policy"] = "require-corp"


async def _chunks(file: Any) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
            yield chunk
    finally:
        file.close()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


# Scanned file tables, by the settings that decide them (see _files_key).
_FILES: dict[str, dict[str, Any]] = {}
_FILES_SETTINGS = (
    "DEBUG", "STATIC_URL", "STATIC_ROOT", "STATICFILES_DIRS", "STATICFILES_FINDERS",
    "INSTALLED_APPS", "FORCE_SCRIPT_NAME",
)  # fmt: skip


def _files_key() -> str:
    names = [*_FILES_SETTINGS, *(n for n in dir(settings) if n.startswith("WHITENOISE_"))]
    return repr([(name, getattr(settings, name, None)) for name in names])


class _Settings:
    def __getattr__(self, name: str) -> Any:
        if name == "WHITENOISE_ADD_HEADERS_FUNCTION":
            return add_headers
        return getattr(settings, name)


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, sync and async capable; either way a file is answered with an async stream
    (served by the ASGI handler, never buffered)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        # Files are read, and their headers made, in WhiteNoise's __init__: the hook goes in
        # through the settings it reads. A table this process has scanned already is reused.
        key = _files_key()
        self._scanned = _FILES.get(key)
        super().__init__(get_response, settings=_Settings())
        if self._scanned is not None:
            self.files = self._scanned
        elif not self.autorefresh:
            _FILES[key] = self.files
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def add_files(self, root: Any, prefix: str | None = None) -> None:
        # STATIC_ROOT exists only after `collectstatic`: the finders cover the same files.
        if self._scanned is None and (self.autorefresh or os.path.isdir(root)):
            super().add_files(root, prefix)

    def add_files_from_finders(self) -> None:
        if self._scanned is None:
            super().add_files_from_finders()

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return self._file_response(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        response = self._file_response(request)
        if response is None:
            return await self.get_response(request)  # type: ignore[no-any-return]
        return response

    def _file_response(self, request: HttpRequest) -> StreamingHttpResponse | None:
        path = request.path_info
        if self.autorefresh:
            static_file = self.find_file(path) if path.startswith(self.static_prefix) else None
        else:
            static_file = self.files.get(path)
        if static_file is None:
            return None
        found = static_file.get_response(request.method, request.META)
        body = _chunks(found.file) if found.file is not None else _nothing()
        response = StreamingHttpResponse(body, status=int(found.status))
        del response["Content-Type"]
        for key, value in found.headers:
            response[key] = value
        return response

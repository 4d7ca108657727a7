"""Masking secret values in everything a run produces: events, streamed output, errors, logs.

Pure string work, no Django: unit-testable and cheap to import from the event pipeline.

- :class:`Masker` replaces every occurrence of a secret value (and a few variants of it: the
  value without surrounding whitespace, its JSON-escaped form, each long line of a multi-line
  value) with ``[secret:NAME]``. Overlapping occurrences are merged into one mask, so no
  character of any value survives.
- :class:`StreamMasker` does the same for a stream cut into chunks (``process.stdout``,
  ``message.delta``): per stream it holds back the shortest tail that could still be the start
  of a secret (at most ``len(longest value) - 1`` characters), and releases it masked with the
  next chunk or when the stream ends (:meth:`StreamMasker.flush`). A value split across two
  chunks is therefore masked as a whole, and nothing unmasked is ever handed on.
- A process-wide registry (:func:`register` / :func:`unregister`) knows the values of the runs
  in progress: :func:`masker_for_session` masks events written outside a run's buffer, and the
  log masking (:func:`install_log_masking`, :class:`SecretLogFilter`) masks every log record
  created while a run is registered.

Data shapes: secrets are ``{name: value}``; masking JSON (:meth:`Masker.mask_data`) walks
dicts (keys too), lists and tuples and returns new objects, never mutating its input.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

MIN_LINE_CHARS = 8
"""A line of a multi-line value is masked on its own when it has at least this many
characters (shorter lines, like ``-----`` rulers, would mask unrelated text)."""


def mask_token(name: str) -> str:
    """What replaces a value of the secret ``name``."""
    return f"[secret:{name}]"


def _variants(value: str) -> list[str]:
    out = [value, value.strip(), json.dumps(value)[1:-1]]
    if "\n" in value:
        out += [line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_LINE_CHARS]
    return [v for v in out if v]


class Masker:
    """Masks the values of ``secrets`` (``{name: value}``); empty values are ignored.

    ``bool(masker)`` is false when there is nothing to mask (every method is then a no-op).
    """

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        found: dict[str, str] = {}
        for name, value in (secrets or {}).items():
            if isinstance(value, str):
                for variant in _variants(value):
                    found.setdefault(variant, name)
        # Longest first: at one position the longest value wins the name of the mask.
        self.patterns: list[tuple[str, str]] = sorted(found.items(), key=lambda p: -len(p[0]))
        self.longest = len(self.patterns[0][0]) if self.patterns else 0

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def add(self, name: str, value: str) -> None:
        """Mask ``value`` (and its encoded variants) as ``name`` from now on, in place: used
        when a run obtains a secret part-way through (an OAuth connection's token), so every
        holder of this masker (the event buffer, the run context) masks it too."""
        merged = dict(self.patterns)
        for variant in _variants(value) if value else []:
            merged.setdefault(variant, name)
        self.patterns = sorted(merged.items(), key=lambda p: -len(p[0]))
        self.longest = len(self.patterns[0][0]) if self.patterns else 0

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """Disjoint ``(start, end, name)`` ranges of ``text`` covered by secret values, in
        order; overlapping occurrences are merged (the name is the first one's)."""
        found: list[tuple[int, int, str]] = []
        for value, name in self.patterns:
            start = text.find(value)
            while start != -1:
                found.append((start, start + len(value), name))
                start = text.find(value, start + 1)
        if not found:
            return []
        found.sort(key=lambda s: (s[0], -s[1]))
        merged = [found[0]]
        for start, end, name in found[1:]:
            last_start, last_end, last_name = merged[-1]
            if start < last_end:
                merged[-1] = (last_start, max(last_end, end), last_name)
            else:
                merged.append((start, end, name))
        return merged

    @staticmethod
    def apply_spans(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
        """``text`` with the ranges of :meth:`spans` (of this very text) replaced."""
        parts, pos = [], 0
        for start, end, name in spans:
            parts += [text[pos:start], mask_token(name)]
            pos = end
        parts.append(text[pos:])
        return "".join(parts)

    def mask(self, text: str) -> str:
        """``text`` with every secret value replaced by ``[secret:NAME]``."""
        if not self.patterns or not text:
            return text
        spans = self.spans(text)
        return self.apply_spans(text, spans) if spans else text

    def mask_data(self, data: Any) -> Any:
        """A copy of JSON-like ``data`` with every string (and dict key) masked."""
        if not self.patterns:
            return data
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, Mapping):
            return {
                (self.mask(k) if isinstance(k, str) else k): self.mask_data(v)
                for k, v in data.items()
            }
        if isinstance(data, list | tuple):
            return [self.mask_data(v) for v in data]
        return data

    def partial_start(self, text: str) -> int:
        """The first index ``i`` where ``text[i:]`` could still grow into a secret value (is a
        proper prefix of one), or ``len(text)`` when no tail could."""
        n = len(text)
        best = n
        for value, _ in self.patterns:
            i = text.find(value[0], max(0, n - len(value) + 1))
            while i != -1 and i < best:
                if value.startswith(text[i:]):
                    best = i
                    break
                i = text.find(value[0], i + 1)
        return best


class StreamMasker:
    """Masks chunked streams, each named by a hashable key (e.g. ``("process.stdout", pid)``).

    ``feed(key, chunk)`` returns the masked text that is safe to hand on now (possibly ``""``)
    and keeps the raw tail that might be the beginning of a secret; ``flush(key)`` returns that
    tail masked when the stream ends. Held text lives only in this object's memory.
    """

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._held: dict[Hashable, str] = {}

    def feed(self, key: Hashable, chunk: str) -> str:
        buf = self._held.pop(key, "") + chunk
        masker = self.masker
        if not masker or not buf:
            return buf
        spans = masker.spans(buf)
        cut = masker.partial_start(buf)
        for start, end, _ in spans:
            if start < cut < end:  # never cut through a complete occurrence
                cut = start
                break
        if cut < len(buf):
            self._held[key] = buf[cut:]
        return masker.apply_spans(buf[:cut], [s for s in spans if s[1] <= cut])

    def flush(self, key: Hashable) -> str:
        """The held tail of stream ``key``, masked (``""`` if none); the stream is forgotten."""
        return self.masker.mask(self._held.pop(key, ""))

    def holds(self, key: Hashable) -> bool:
        """Whether stream ``key`` holds text now."""
        return key in self._held

    def held_keys(self) -> list[Hashable]:
        """Streams that hold text now."""
        return list(self._held)


# The registry of runs in progress (process-wide) --------------------------------------------

_lock = threading.Lock()
_handles = itertools.count(1)
_runs: dict[int, tuple[Hashable, dict[str, str]]] = {}
_by_scope: dict[Hashable, Masker] = {}
_everything = Masker()
_installed = False


def _rebuild() -> None:
    global _everything
    per_scope: dict[Hashable, dict[str, str]] = {}
    union: dict[str, str] = {}
    for scope, secrets in _runs.values():
        per_scope.setdefault(scope, {}).update(secrets)
        union.update(secrets)
    _by_scope.clear()
    _by_scope.update({scope: Masker(values) for scope, values in per_scope.items()})
    _everything = Masker(union)


def register(scope: Hashable, secrets: Mapping[str, str]) -> int:
    """Mask ``secrets`` in events of ``scope`` (a session pk) and in every log record of this
    process until :func:`unregister` is called with the returned handle."""
    install_log_masking()
    with _lock:
        handle = next(_handles)
        _runs[handle] = (scope, {k: v for k, v in secrets.items() if v})
        _rebuild()
    return handle


def unregister(handle: int) -> None:
    """Forget the secrets registered under ``handle`` (idempotent)."""
    with _lock:
        if _runs.pop(handle, None) is not None:
            _rebuild()


def masker_for_session(scope: Hashable) -> Masker | None:
    """The masker of the runs registered for ``scope``, if any."""
    return _by_scope.get(scope)


def active_masker() -> Masker:
    """A masker of every value registered in this process (empty when no run is)."""
    return _everything


# Logging ---------------------------------------------------------------------------------------


def mask_log_record(record: logging.LogRecord, masker: Masker | None = None) -> None:
    """Mask ``record``'s message, formatted exception and stack in place (a no-op when no value
    occurs in them; then the record keeps its ``msg``/``args`` for structured handlers)."""
    masker = masker if masker is not None else _everything
    if not masker:
        return
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: keep what we can show, masked
        message = str(record.msg)
    masked = masker.mask(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        # Formatters use exc_text when set: pre-format the traceback only when it must change.
        text = logging.Formatter().formatException(record.exc_info)
        masked = masker.mask(text)
        if masked != text:
            record.exc_text = masked
    elif record.exc_text:
        record.exc_text = masker.mask(record.exc_text)
    if record.stack_info:
        record.stack_info = masker.mask(record.stack_info)


class SecretLogFilter(logging.Filter):
    """A logging filter masking the values of the runs in progress (never drops a record).

    :func:`install_log_masking` already masks every record this process creates; this filter
    is for handlers that receive records from elsewhere (e.g. a ``QueueListener``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_log_record(record)
        return True


def install_log_masking() -> None:
    """Wrap the log record factory once so every record created while a run is registered is
    masked before any handler, filter or formatter sees it (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _everything:
                mask_log_record(record, _everything)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
